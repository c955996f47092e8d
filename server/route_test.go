package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

// routeHello accepts and greets.
var routeHello = canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
	if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return nil, err
	}
	if err := c.Send(canal.Text("hello")); err != nil {
		return nil, err
	}
	return routeNop{}, nil
})

type routeNop struct{}

func (routeNop) Receive(context.Context, canal.Conn, canal.Frame) error { return nil }
func (routeNop) Event(context.Context, canal.Conn, canal.Message) error { return nil }
func (routeNop) Disconnect(context.Context, canal.Conn, int)            {}

// routeDialRefused dials and wants a refusal; it returns it.
func routeDialRefused(t *testing.T, url string, opts canaltest.DialOptions) *canaltest.HandshakeError {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := canaltest.Dial(ctx, url, opts)
	if err == nil {
		c.Abort()
		t.Fatalf("dial %s: upgraded, want a refusal", url)
	}
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("dial %s: %v, want a refusal", url, err)
	}
	return he
}

func routeDialHello(t *testing.T, url string, opts canaltest.DialOptions, first string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := canaltest.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer c.Abort()
	if first != "" {
		if err := c.SendText(first); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.ReceiveText(ctx); err != nil || got != "hello" {
		t.Fatalf("got %q, %v; want the greeting", got, err)
	}
}

// TestRouterAnswersFirst: a path no route serves gets 404 before the upgrade, whatever
// the middleware order and however the ticket travels, and the ticket stays unused.
func TestRouterAnswersFirst(t *testing.T) {
	t.Parallel()
	rs, err := ticket.NewRedis(canaltest.StartRedis(t).Client(t), ticket.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]interface {
		middleware.TicketStore
		Issue(context.Context, canal.User, time.Duration) (string, error)
	}{"memory": ticket.NewMemory(ticket.MemoryOptions{}), "redis": rs}
	origin, err := middleware.Origin("http://app.example")
	if err != nil {
		t.Fatal(err)
	}
	routes := router.Must(
		router.Path("ws/chat/<str:room>/", routeHello),
		router.Path("ws/", router.Must(router.Path("nested/<int:id>/", routeHello))),
	)
	kinds := []string{"query", "subprotocol", "first message"}
	for storeName, store := range stores {
		auth, err := middleware.Ticket(store, middleware.TicketOptions{})
		if err != nil {
			t.Fatal(err)
		}
		orders := map[string]canal.Handler{
			"origin, ticket": canal.Chain{origin, auth}.Then(routes),
			"ticket, origin": canal.Chain{auth, origin}.Then(routes),
			"stack":          middleware.Stack(middleware.Recover(nil), auth, origin)(routes),
		}
		for name, root := range orders {
			t.Run(storeName+"/"+name, func(t *testing.T) {
				t.Parallel()
				srv := canaltest.NewServer(t, root, server.Options{Origins: []string{"app.example"}})
				for _, kind := range kinds {
					for _, path := range []string{"/ws/nope/", "/ws/chat/", "/ws/nested/x/", "/"} {
						tk, err := store.Issue(t.Context(), canal.User{ID: "1", Username: "ada"}, time.Minute)
						if err != nil {
							t.Fatal(err)
						}
						url, opts := srv.URL(path+"?room=1"), canaltest.DialOptions{Origin: "http://app.example"}
						switch kind {
						case "query":
							url += "&ticket=" + tk
						case "subprotocol":
							opts.Subprotocols = []string{"canal.ticket", "canal.ticket." + tk}
						}
						start := time.Now()
						he := routeDialRefused(t, url, opts)
						if he.Status != http.StatusNotFound || he.Reason != "no route for path" {
							t.Fatalf("%s %s: %d %q, want 404 %q", kind, path, he.Status, he.Reason, "no route for path")
						}
						if d := time.Since(start); d > 3*time.Second {
							t.Fatalf("%s %s: refused after %v: the first-message wait ran", kind, path, d)
						}
						// Unconsumed: the ticket still works, once.
						if u, err := store.Consume(t.Context(), tk); err != nil || u.ID != "1" {
							t.Fatalf("%s %s: the ticket was consumed by a refused path: %v", kind, path, err)
						}
					}
				}
				// The served paths still work (a first-message ticket).
				for _, path := range []string{"/ws/chat/lobby/", "/ws/nested/7/"} {
					tk, err := store.Issue(t.Context(), canal.User{ID: "1", Username: "ada"}, time.Minute)
					if err != nil {
						t.Fatal(err)
					}
					routeDialHello(t, srv.URL(path), canaltest.DialOptions{Origin: "http://app.example"}, `{"ticket":"`+tk+`"}`)
				}
			})
		}
	}
}

// TestRouterHiddenByHand is the control: middleware applied by hand, auth(routes), hides
// the router from the server, so a query ticket to an unknown path is consumed before
// the router's own 404. The chain is what lets the router answer first.
func TestRouterHiddenByHand(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	auth, err := middleware.Ticket(store, middleware.TicketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	routes := router.Must(router.Path("ws/chat/<str:room>/", routeHello))
	srv := canaltest.NewServer(t, auth(routes), server.Options{})
	tk, err := store.Issue(t.Context(), canal.User{ID: "1", Username: "ada"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	he := routeDialRefused(t, srv.URL("/ws/nope/?ticket="+tk), canaltest.DialOptions{})
	if he.Status != http.StatusNotFound || he.Reason != "no route for path" {
		t.Fatalf("got %+v, want the router's 404", he)
	}
	if _, err := store.Consume(t.Context(), tk); !errors.Is(err, ticket.ErrInvalid) {
		t.Fatalf("Consume after the refusal = %v: the control did not consume the ticket", err)
	}
}

// TestPlainRootGetsEverything: a root that is not a canal.Matcher runs for every path.
func TestPlainRootGetsEverything(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	root := canal.Chain{func(next canal.Handler) canal.Handler {
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			calls.Add(1)
			return next.Connect(ctx, c)
		})
	}}.Then(routeHello)
	if _, ok := root.(canal.Matcher); ok {
		t.Fatal("a chain around a HandlerFunc claims to match")
	}
	srv := canaltest.NewServer(t, root, server.Options{})
	for _, path := range []string{"/", "/ws/nope/", "/anything/at/all"} {
		routeDialHello(t, srv.URL(path), canaltest.DialOptions{}, "")
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("the root ran %d times, want 3", n)
	}
}

// routeRawRefusal sends a WebSocket upgrade with net/http, to read what a refused one's
// body and headers hold.
func routeRawRefusal(t *testing.T, url string) (status int, reason, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatalf("%s: upgraded", url)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	return resp.StatusCode, resp.Header.Get(canal.ReasonHeader), string(b)
}

// TestRefusalReasons: a refused handshake says why, in X-Canal-Reason and the body,
// and nothing of the private cause.
func TestRefusalReasons(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-a1b2c3"
	long := strings.Repeat("x", 300)
	tests := []struct {
		name    string
		connect func(ctx context.Context, c canal.Conn) (canal.Session, error)
		status  int
		reason  string // "" for no header
		body    string
	}{
		{name: "reject", status: 403, reason: "not a member", body: "not a member\n",
			connect: func(context.Context, canal.Conn) (canal.Session, error) {
				return nil, &canal.RejectError{Status: 403, Reason: "not a member", Err: errors.New("user " + secret)}
			}},
		{name: "reject without reason", status: 401, body: "Unauthorized\n",
			connect: func(context.Context, canal.Conn) (canal.Session, error) { return nil, canal.Reject(401, "") }},
		{name: "other error", status: 500, reason: "internal error", body: "internal error\n",
			connect: func(context.Context, canal.Conn) (canal.Session, error) { return nil, errors.New("db " + secret) }},
		{name: "panic", status: 500, reason: "panic", body: "panic\n",
			connect: func(context.Context, canal.Conn) (canal.Session, error) { panic(secret) }},
		{name: "control characters", status: 403, reason: "a??X-Evil: 1??", body: "a??X-Evil: 1??\n",
			connect: func(context.Context, canal.Conn) (canal.Session, error) {
				return nil, canal.Reject(403, "a\r\nX-Evil: 1é")
			}},
		{name: "long", status: 403, reason: long[:123], body: long[:123] + "\n",
			connect: func(context.Context, canal.Conn) (canal.Session, error) { return nil, canal.Reject(403, long) }},
		{name: "close before accept", status: 403, reason: "refused before accept", body: "refused before accept\n",
			connect: func(_ context.Context, c canal.Conn) (canal.Session, error) {
				return routeNop{}, c.Close(canal.CloseNormal, "")
			}},
	}
	logs := &canaltest.LogBuffer{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := canaltest.NewServer(t, canal.HandlerFunc(tt.connect), server.Options{Logger: logs.Logger()})
			status, reason, body := routeRawRefusal(t, srv.HTTPURL("/ws/"))
			if status != tt.status || reason != tt.reason || body != tt.body {
				t.Fatalf("got %d %q %q, want %d %q %q", status, reason, body, tt.status, tt.reason, tt.body)
			}
			he := routeDialRefused(t, srv.URL("/ws/"), canaltest.DialOptions{})
			if he.Status != tt.status || he.Reason != tt.reason {
				t.Fatalf("Dial: %+v", he)
			}
		})
	}
	t.Run("accept timeout", func(t *testing.T) {
		t.Parallel()
		srv := canaltest.NewServer(t, canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
			return routeNop{}, nil
		}), server.Options{HandshakeTimeout: 200 * time.Millisecond})
		if status, reason, _ := routeRawRefusal(t, srv.HTTPURL("/")); status != 403 || reason != "accept timeout" {
			t.Fatalf("got %d %q", status, reason)
		}
	})
	t.Run("origin", func(t *testing.T) {
		t.Parallel()
		srv := canaltest.NewServer(t, routeHello, server.Options{})
		he := routeDialRefused(t, srv.URL("/"), canaltest.DialOptions{Origin: "http://evil.example"})
		if he.Status != 403 || he.Reason != "origin not allowed" {
			t.Fatalf("got %+v", he)
		}
	})
}

// lateRefuser accepts, then refuses, and reports the code its Disconnect got.
type lateRefuser struct{ codes chan int }

func (r *lateRefuser) Connect(_ context.Context, c *consumer.Conn) error {
	if err := c.Accept(); err != nil {
		return err
	}
	return canal.Reject(http.StatusForbidden, "not a member")
}

func (r *lateRefuser) Disconnect(_ context.Context, _ *consumer.Conn, code int) { r.codes <- code }

// TestRejectAfterAccept: a Connect that accepted and then refused closes the socket
// with canal.CloseFor's code and reason, the code the consumer's Disconnect got.
func TestRejectAfterAccept(t *testing.T) {
	t.Parallel()
	codes := make(chan int, 1)
	h, err := consumer.New(func() *lateRefuser { return &lateRefuser{codes: codes} }, consumer.Options[*lateRefuser]{})
	if err != nil {
		t.Fatal(err)
	}
	srv := canaltest.NewServer(t, h, server.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := canaltest.Dial(ctx, srv.URL("/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	code, reason, err := c.ExpectClose(ctx)
	if err != nil || code != canal.CloseForbidden || reason != "not a member" {
		t.Fatalf("close %d %q, %v; want %d %q", code, reason, err, canal.CloseForbidden, "not a member")
	}
	select {
	case got := <-codes:
		if got != canal.CloseForbidden {
			t.Fatalf("Disconnect got %d, the client saw %d", got, canal.CloseForbidden)
		}
	case <-ctx.Done():
		t.Fatal("Disconnect never ran")
	}
}
