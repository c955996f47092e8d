package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

const marker = "canal.ticket"

var ada = canal.User{ID: "42", Username: "ada", Attrs: map[string]any{"is_staff": true}}

// --- the application under the middleware ---

// seenScope is what the greeter saw of its scope when it ran.
type seenScope struct {
	user         canal.User
	rawQuery     string
	subprotocols []string
	header       []string // Sec-Websocket-Protocol values
}

// greeter is the consumer: it accepts (with its own subprotocol when the client
// offered it), sends "hello <username>", echoes frames and reports events.
type greeter struct {
	accept string // the app's own subprotocol; "" accepts with none
	refuse error  // returned from Connect when set

	mu   sync.Mutex
	seen []seenScope
}

func (g *greeter) Connect(_ context.Context, c canal.Conn) (canal.Session, error) {
	s := c.Scope()
	g.mu.Lock()
	g.seen = append(g.seen, seenScope{
		user:         s.User,
		rawQuery:     s.RawQuery,
		subprotocols: slices.Clone(s.Subprotocols),
		header:       slices.Clone(s.Headers.Values("Sec-Websocket-Protocol")),
	})
	g.mu.Unlock()
	if g.refuse != nil {
		return nil, g.refuse
	}
	var opts canal.AcceptOptions
	if g.accept != "" && slices.Contains(s.Subprotocols, g.accept) {
		opts.Subprotocol = g.accept
	}
	if err := c.Accept(opts); err != nil {
		return nil, err
	}
	if err := c.Send(canal.Text("hello " + s.User.Username)); err != nil {
		return nil, err
	}
	return greetSession{}, nil
}

func (g *greeter) calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

func (g *greeter) last(t *testing.T) seenScope {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.seen) == 0 {
		t.Fatal("the consumer never ran")
	}
	return g.seen[len(g.seen)-1]
}

type greetSession struct{}

func (greetSession) Receive(_ context.Context, c canal.Conn, f canal.Frame) error {
	return c.Send(canal.Text("echo " + string(f.Data)))
}

func (greetSession) Event(_ context.Context, c canal.Conn, m canal.Message) error {
	return c.Send(canal.Text("event " + m.Type()))
}

func (greetSession) Disconnect(context.Context, canal.Conn, int) {}

// --- a server with the middleware, and its logs ---

// ticketIssuer is a store tests can also issue from.
type ticketIssuer interface {
	middleware.TicketStore
	Issue(ctx context.Context, u canal.User, ttl time.Duration) (string, error)
}

// ticketEnv is a loopback server running Ticket in front of a greeter. Every ticket
// issued through it is checked against the server's logs (at debug level) when the
// test ends, after the server has shut down.
type ticketEnv struct {
	srv   *canaltest.Server
	app   *greeter
	store ticketIssuer
	conns chan canal.Conn // the server's Conn of each handshake, when there is room
	logs  *canaltest.LogBuffer

	mu      sync.Mutex
	secrets []string
}

func newTicketEnv(t *testing.T, store ticketIssuer, opts middleware.TicketOptions, app *greeter) *ticketEnv {
	t.Helper()
	if app == nil {
		app = &greeter{}
	}
	e := &ticketEnv{app: app, store: store, conns: make(chan canal.Conn, 4), logs: &canaltest.LogBuffer{}}
	// Registered before the server's cleanup, so it runs after the shutdown.
	t.Cleanup(func() {
		logs := e.logs.String()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range e.secrets {
			if strings.Contains(logs, s) {
				t.Errorf("the server logs contain a ticket:\n%s", logs)
			}
		}
	})
	auth, err := middleware.Ticket(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	capture := func(next canal.Handler) canal.Handler {
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			select {
			case e.conns <- c:
			default:
			}
			return next.Connect(ctx, c)
		})
	}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv = canaltest.NewServer(t, middleware.Stack(capture, auth)(app), server.Options{Logger: logger})
	return e
}

// remember registers a secret that must never be logged.
func (e *ticketEnv) remember(s string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
	return s
}

func (e *ticketEnv) issue(t *testing.T, ttl time.Duration) string {
	t.Helper()
	tk, err := e.store.Issue(t.Context(), ada, ttl)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return e.remember(tk)
}

// forged returns a well-formed ticket that was never issued.
func (e *ticketEnv) forged(t *testing.T) string {
	t.Helper()
	tk, err := ticket.New()
	if err != nil {
		t.Fatal(err)
	}
	return e.remember(tk)
}

// How a client presents its ticket.
type ticketKind string

const (
	kindQuery       ticketKind = "query"
	kindSubprotocol ticketKind = "subprotocol"
	kindFirst       ticketKind = "first message"
)

var ticketKinds = []ticketKind{kindQuery, kindSubprotocol, kindFirst}

// attempt is what a client saw.
type attempt struct {
	greeting string // first frame
	protocol string // the subprotocol the 101 named
	status   int    // HTTP status of a refused handshake
	code     int    // close code of a socket closed before any frame
	reason   string // its reason
}

// present opens a socket presenting tk as kind, offering protocols first (and the
// marker, unless noMarker), and reports the first frame or the refusal.
func (e *ticketEnv) present(t *testing.T, kind ticketKind, tk string, protocols []string, noMarker bool) attempt {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	url := e.srv.URL("/ws/?room=lobby")
	offer := slices.Clone(protocols)
	if !noMarker {
		offer = append(offer, marker)
	}
	switch kind {
	case kindQuery:
		url += "&ticket=" + tk
	case kindSubprotocol:
		offer = append(offer, marker+"."+tk)
	}
	c, err := canaltest.Dial(ctx, url, canaltest.DialOptions{Subprotocols: offer})
	if err != nil {
		if strings.Contains(err.Error(), tk) {
			t.Errorf("dial error %q contains the ticket", err)
		}
		var he *canaltest.HandshakeError
		if !errors.As(err, &he) {
			t.Fatalf("dial: %v", err)
		}
		return attempt{status: he.Status}
	}
	defer c.Abort()
	if kind == kindFirst {
		if err := c.SendJSON(map[string]string{"type": "auth", "ticket": tk}); err != nil {
			t.Fatalf("send ticket: %v", err)
		}
	}
	return receiveAttempt(t, ctx, c)
}

func receiveAttempt(t *testing.T, ctx context.Context, c *canaltest.Communicator) attempt {
	t.Helper()
	a := attempt{protocol: c.Subprotocol}
	f, err := c.Receive(ctx)
	var ce *canal.CloseError
	switch {
	case errors.As(err, &ce):
		a.code, a.reason = ce.Code, ce.Reason
	case err != nil:
		t.Fatalf("receive: %v", err)
	default:
		a.greeting = string(f.Data)
	}
	return a
}

// ticketStores returns a memory store and a store on a private Redis.
func ticketStores(t *testing.T) []struct {
	name  string
	store ticketIssuer
} {
	t.Helper()
	r := canaltest.StartRedis(t)
	rs, err := ticket.NewRedis(r.Client(t), ticket.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name  string
		store ticketIssuer
	}{
		{"memory", ticket.NewMemory(ticket.MemoryOptions{})},
		{"redis", rs},
	}
}

// checkClean fails if the consumer's scope shows the ticket anywhere.
func checkClean(t *testing.T, s seenScope, tk string) {
	t.Helper()
	if strings.Contains(s.rawQuery, tk) || strings.Contains(s.rawQuery, "ticket=") {
		t.Errorf("consumer's RawQuery %q still holds the ticket", s.rawQuery)
	}
	for _, p := range s.subprotocols {
		if strings.Contains(p, tk) || strings.HasPrefix(p, marker+".") {
			t.Errorf("consumer's Subprotocols %q still hold the ticket", s.subprotocols)
		}
	}
	for _, h := range s.header {
		if strings.Contains(h, tk) || strings.Contains(h, marker+".") {
			t.Errorf("consumer's Sec-Websocket-Protocol %q still holds the ticket", s.header)
		}
	}
}

// --- over real sockets ---

func TestTicketTransports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		kind      ticketKind
		protocols []string // offered before the marker
		noMarker  bool
		appAccept string // the app's own subprotocol
		want      string // the 101's subprotocol
		wantProto []string
	}{
		{name: "query", kind: kindQuery, noMarker: true, want: "", wantProto: nil},
		{name: "query, marker offered", kind: kindQuery, want: marker, wantProto: []string{marker}},
		{name: "subprotocol", kind: kindSubprotocol, want: marker, wantProto: []string{marker}},
		{name: "subprotocol, app protocol wins", kind: kindSubprotocol, protocols: []string{"chat.v1"}, appAccept: "chat.v1", want: "chat.v1", wantProto: []string{"chat.v1", marker}},
		{name: "subprotocol, app protocol offered but not chosen", kind: kindSubprotocol, protocols: []string{"chat.v1"}, want: marker, wantProto: []string{"chat.v1", marker}},
		{name: "first message", kind: kindFirst, want: marker, wantProto: []string{marker}},
		{name: "first message, no marker", kind: kindFirst, noMarker: true, want: "", wantProto: nil},
	}
	for _, st := range ticketStores(t) {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					e := newTicketEnv(t, st.store, middleware.TicketOptions{}, &greeter{accept: tt.appAccept})
					tk := e.issue(t, time.Minute)
					got := e.present(t, tt.kind, tk, tt.protocols, tt.noMarker)
					if got.greeting != "hello ada" {
						t.Fatalf("got %+v, want the greeting", got)
					}
					if got.protocol != tt.want {
						t.Errorf("101 subprotocol = %q, want %q", got.protocol, tt.want)
					}
					seen := e.app.last(t)
					if seen.user.ID != "42" || seen.user.Username != "ada" || seen.user.Attrs["is_staff"] != true {
						t.Errorf("consumer's user = %+v", seen.user)
					}
					if seen.rawQuery != "room=lobby" {
						t.Errorf("consumer's RawQuery = %q, want %q", seen.rawQuery, "room=lobby")
					}
					if !slices.Equal(seen.subprotocols, tt.wantProto) {
						t.Errorf("consumer's Subprotocols = %q, want %q", seen.subprotocols, tt.wantProto)
					}
					wantHeader := []string(nil)
					if len(tt.wantProto) > 0 {
						wantHeader = []string{strings.Join(tt.wantProto, ", ")}
					}
					if !slices.Equal(seen.header, wantHeader) {
						t.Errorf("consumer's Sec-Websocket-Protocol = %q, want %q", seen.header, wantHeader)
					}
					checkClean(t, seen, tk)
				})
			}
		})
	}
}

func TestTicketRefusals(t *testing.T) {
	t.Parallel()
	wantRefusal := func(t *testing.T, kind ticketKind, got attempt) {
		t.Helper()
		if kind == kindFirst {
			if got.code != canal.CloseUnauthorized {
				t.Fatalf("got %+v, want close %d", got, canal.CloseUnauthorized)
			}
			return
		}
		if got.status != http.StatusForbidden {
			t.Fatalf("got %+v, want HTTP 403", got)
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, e *ticketEnv, kind ticketKind)
	}{ // each lets the consumer run at most for a first, successful use
		{"reused", func(t *testing.T, e *ticketEnv, kind ticketKind) {
			tk := e.issue(t, time.Minute)
			if got := e.present(t, kind, tk, nil, false); got.greeting != "hello ada" {
				t.Fatalf("first use: %+v", got)
			}
			wantRefusal(t, kind, e.present(t, kind, tk, nil, false))
		}},
		{"reused across transports", func(t *testing.T, e *ticketEnv, kind ticketKind) {
			tk := e.issue(t, time.Minute)
			other := kindQuery
			if kind == kindQuery {
				other = kindFirst
			}
			if got := e.present(t, other, tk, nil, false); got.greeting != "hello ada" {
				t.Fatalf("first use: %+v", got)
			}
			wantRefusal(t, kind, e.present(t, kind, tk, nil, false))
		}},
		{"expired", func(t *testing.T, e *ticketEnv, kind ticketKind) {
			tk := e.issue(t, 100*time.Millisecond)
			time.Sleep(300 * time.Millisecond)
			wantRefusal(t, kind, e.present(t, kind, tk, nil, false))
		}},
		{"forged", func(t *testing.T, e *ticketEnv, kind ticketKind) {
			wantRefusal(t, kind, e.present(t, kind, e.forged(t), nil, false))
		}},
		{"malformed", func(t *testing.T, e *ticketEnv, kind ticketKind) {
			wantRefusal(t, kind, e.present(t, kind, e.remember("not~a~ticket"), nil, false))
		}},
	}
	for _, st := range ticketStores(t) {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			for _, kind := range ticketKinds {
				for _, tt := range tests {
					t.Run(string(kind)+"/"+tt.name, func(t *testing.T) {
						t.Parallel()
						e := newTicketEnv(t, st.store, middleware.TicketOptions{}, nil)
						tt.run(t, e, kind)
						want := 0
						if strings.HasPrefix(tt.name, "reused") {
							want = 1
						}
						if n := e.app.calls(); n != want {
							t.Fatalf("the consumer ran %d times, want %d", n, want)
						}
					})
				}
			}
			t.Run("missing, first message disabled", func(t *testing.T) {
				t.Parallel()
				e := newTicketEnv(t, st.store, middleware.TicketOptions{Transports: middleware.TransportQuery | middleware.TransportSubprotocol}, nil)
				for _, offer := range [][]string{nil, {marker}, {marker, marker + "."}} {
					c, err := canaltest.Dial(t.Context(), e.srv.URL("/ws/?ticket="), canaltest.DialOptions{Subprotocols: offer})
					var he *canaltest.HandshakeError
					if !errors.As(err, &he) || he.Status != http.StatusForbidden {
						if c != nil {
							c.Abort()
						}
						t.Fatalf("offer %q: dial = %v, want HTTP 403", offer, err)
					}
				}
				if e.app.calls() != 0 {
					t.Fatal("the consumer ran without a ticket")
				}
			})
			t.Run("transport disabled", func(t *testing.T) {
				t.Parallel()
				// Only the first message is allowed: a query ticket is not consumed, and a
				// bearer entry is stripped without being consumed; both then wait for the
				// first frame, where the same ticket still works.
				e := newTicketEnv(t, st.store, middleware.TicketOptions{Transports: middleware.TransportFirstMessage}, nil)
				tk := e.issue(t, time.Minute)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				c, err := canaltest.Dial(ctx, e.srv.URL("/ws/?x=1&ticket="+tk), canaltest.DialOptions{Subprotocols: []string{marker, marker + "." + tk}})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Abort()
				if err := c.SendJSON(map[string]string{"ticket": tk}); err != nil {
					t.Fatal(err)
				}
				if got := receiveAttempt(t, ctx, c); got.greeting != "hello ada" {
					t.Fatalf("got %+v", got)
				}
				seen := e.app.last(t)
				if seen.rawQuery != "x=1&ticket="+tk {
					t.Errorf("RawQuery = %q: a disabled transport's parameter is the app's", seen.rawQuery)
				}
				if !slices.Equal(seen.subprotocols, []string{marker}) {
					t.Errorf("Subprotocols = %q, want the bearer stripped", seen.subprotocols)
				}
			})
		})
	}
}

func TestTicketFirstMessage(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	// Only the timeout tests shorten AuthTimeout: on a loaded machine the others must
	// not race the timer.
	opts := middleware.TicketOptions{}
	dial := func(t *testing.T, e *ticketEnv) (*canaltest.Communicator, context.Context) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		c, err := canaltest.Dial(ctx, e.srv.URL("/ws/"), canaltest.DialOptions{Subprotocols: []string{marker}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Abort)
		if c.Subprotocol != marker {
			t.Fatalf("101 subprotocol = %q, want %q", c.Subprotocol, marker)
		}
		return c, ctx
	}
	expectClose := func(t *testing.T, ctx context.Context, c *canaltest.Communicator, want int) {
		t.Helper()
		code, _, err := c.ExpectClose(ctx)
		if err != nil || code != want {
			t.Fatalf("close = %d, %v; want %d", code, err, want)
		}
	}
	bad := []struct {
		name string
		send func(c *canaltest.Communicator, tk string) error
	}{
		{"not JSON", func(c *canaltest.Communicator, tk string) error { return c.SendText("ticket " + tk) }},
		{"binary", func(c *canaltest.Communicator, tk string) error {
			return c.SendBytes([]byte(`{"ticket":"` + tk + `"}`))
		}},
		{"no ticket", func(c *canaltest.Communicator, _ string) error { return c.SendText(`{"type":"auth"}`) }},
		{"empty ticket", func(c *canaltest.Communicator, _ string) error { return c.SendText(`{"ticket":""}`) }},
		{"ticket not a string", func(c *canaltest.Communicator, _ string) error { return c.SendText(`{"ticket":42}`) }},
		{"JSON array", func(c *canaltest.Communicator, tk string) error { return c.SendText(`["` + tk + `"]`) }},
		{"oversized", func(c *canaltest.Communicator, tk string) error {
			return c.SendText(`{"ticket":"` + tk + `","pad":"` + strings.Repeat("x", 5000) + `"}`)
		}},
	}
	for _, tt := range bad {
		t.Run("garbage/"+tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTicketEnv(t, store, opts, nil)
			tk := e.issue(t, time.Minute)
			c, ctx := dial(t, e)
			if err := tt.send(c, tk); err != nil {
				t.Fatal(err)
			}
			expectClose(t, ctx, c, canal.CloseUnauthorized)
			if e.app.calls() != 0 {
				t.Fatal("the consumer ran")
			}
			// A refused frame does not burn the ticket it may have carried.
			if tt.name == "not JSON" || tt.name == "binary" || tt.name == "JSON array" || tt.name == "oversized" {
				if _, err := store.Consume(t.Context(), tk); err != nil {
					t.Fatalf("the ticket was consumed by a refused frame: %v", err)
				}
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		e := newTicketEnv(t, store, middleware.TicketOptions{AuthTimeout: 200 * time.Millisecond}, nil)
		start := time.Now()
		c, ctx := dial(t, e)
		code, reason, err := c.ExpectClose(ctx)
		if err != nil || code != canal.CloseAuthTimeout {
			t.Fatalf("close = %d, %v; want %d", code, err, canal.CloseAuthTimeout)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
			t.Fatalf("closed after %v, want about 200ms", d)
		}
		if reason == "" {
			t.Error("no close reason")
		}
	})

	t.Run("timer stopped once authenticated", func(t *testing.T) {
		t.Parallel()
		e := newTicketEnv(t, store, middleware.TicketOptions{AuthTimeout: time.Second}, nil)
		tk := e.issue(t, time.Minute)
		c, ctx := dial(t, e)
		if err := c.SendJSON(map[string]string{"ticket": tk}); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReceiveText(ctx); err != nil || got != "hello ada" {
			t.Fatalf("got %q, %v", got, err)
		}
		if err := c.ExpectNothing(1200 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := c.SendText("ping"); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReceiveText(ctx); err != nil || got != "echo ping" {
			t.Fatalf("got %q, %v; want the echo", got, err)
		}
	})

	t.Run("events before auth dropped", func(t *testing.T) {
		t.Parallel()
		e := newTicketEnv(t, store, middleware.TicketOptions{}, nil)
		tk := e.issue(t, time.Minute)
		c, ctx := dial(t, e)
		sc := <-e.conns
		if !sc.Deliver(canal.Message{"type": "early"}) {
			t.Fatal("Deliver before auth refused")
		}
		if err := c.SendJSON(map[string]string{"type": "auth", "ticket": tk}); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReceiveText(ctx); err != nil || got != "hello ada" {
			t.Fatalf("first frame %q, %v; want the greeting (the early event must be dropped)", got, err)
		}
		if !sc.Deliver(canal.Message{"type": "late"}) {
			t.Fatal("Deliver after auth refused")
		}
		if got, err := c.ReceiveText(ctx); err != nil || got != "event late" {
			t.Fatalf("got %q, %v; want the late event", got, err)
		}
		if err := c.SendText("x"); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReceiveText(ctx); err != nil || got != "echo x" {
			t.Fatalf("got %q, %v; want the echo", got, err)
		}
	})

	t.Run("consumer refuses", func(t *testing.T) {
		t.Parallel()
		e := newTicketEnv(t, store, middleware.TicketOptions{}, &greeter{refuse: canal.Reject(http.StatusForbidden, "not a member")})
		tk := e.issue(t, time.Minute)
		c, ctx := dial(t, e)
		if err := c.SendJSON(map[string]string{"ticket": tk}); err != nil {
			t.Fatal(err)
		}
		expectClose(t, ctx, c, canal.CloseForbidden)
	})
}

// TestTicketFirstMessageBare: the first frame may be the bare ticket, as a client that
// does websocket.send(ticket) sends it.
func TestTicketFirstMessageBare(t *testing.T) {
	t.Parallel()
	e := newTicketEnv(t, ticket.NewMemory(ticket.MemoryOptions{}), middleware.TicketOptions{}, nil)
	tk := e.issue(t, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := canaltest.Dial(ctx, e.srv.URL("/ws/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	if err := c.SendText(tk); err != nil {
		t.Fatal(err)
	}
	if got := receiveAttempt(t, ctx, c); got.greeting != "hello ada" {
		t.Fatalf("got %+v, want the greeting", got)
	}
	// Used: a second bare presentation is refused with the reason in the close frame.
	c2, err := canaltest.Dial(ctx, e.srv.URL("/ws/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Abort()
	if err := c2.SendText(tk); err != nil {
		t.Fatal(err)
	}
	if got := receiveAttempt(t, ctx, c2); got.code != canal.CloseUnauthorized || got.reason != "invalid ticket" {
		t.Fatalf("reused: got %+v, want close 4401 \"invalid ticket\"", got)
	}
}

// TestTicketRace: 500 connections present one ticket at once; exactly one gets in.
func TestTicketRace(t *testing.T) {
	t.Parallel()
	const (
		dials   = 500
		workers = 50 // bounds open sockets, and file descriptors
	)
	r := canaltest.StartRedis(t)
	store, err := ticket.NewRedis(r.Client(t), ticket.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := newTicketEnv(t, store, middleware.TicketOptions{Transports: middleware.TransportQuery}, nil)
	tk := e.issue(t, time.Minute)
	url := e.srv.URL("/ws/?ticket=" + tk)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		accepted, refused atomic.Int32
		mu                sync.Mutex
		failures          []error
	)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	jobs := make(chan struct{})
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			<-start
			for range jobs {
				c, err := canaltest.Dial(ctx, url, canaltest.DialOptions{})
				var he *canaltest.HandshakeError
				switch {
				case errors.As(err, &he) && he.Status == http.StatusForbidden:
					refused.Add(1)
				case err != nil:
					fail(err)
				default:
					accepted.Add(1)
					if got, err := c.ReceiveText(ctx); err != nil || got != "hello ada" {
						fail(fmt.Errorf("accepted socket: %q, %v", got, err))
					}
					c.Abort()
				}
			}
		})
	}
	close(start)
	for range dials {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	for _, err := range failures {
		t.Error(err)
	}
	if accepted.Load() != 1 || refused.Load() != dials-1 {
		t.Fatalf("accepted %d, refused %d; want 1 and %d", accepted.Load(), refused.Load(), dials-1)
	}
	if n := e.app.calls(); n != 1 {
		t.Fatalf("the consumer ran %d times", n)
	}
}

// TestTicketRedisDown: with Redis dead, every transport fails closed (503, close 1011)
// and nothing breaks; after a restart a fresh ticket works again.
func TestTicketRedisDown(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	client := r.Client(t, func(o *rueidis.ClientOption) {
		o.Dialer.Timeout = 300 * time.Millisecond
		o.ConnWriteTimeout = 500 * time.Millisecond
		o.DisableRetry = true
	})
	store, err := ticket.NewRedis(client, ticket.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := newTicketEnv(t, store, middleware.TicketOptions{Timeout: time.Second}, nil)
	before := []string{e.issue(t, time.Minute), e.issue(t, time.Minute), e.issue(t, time.Minute)}

	r.Kill()
	for i, kind := range ticketKinds {
		start := time.Now()
		got := e.present(t, kind, before[i], nil, false)
		want := attempt{status: http.StatusServiceUnavailable}
		if kind == kindFirst {
			want = attempt{protocol: marker, code: canal.CloseInternalError, reason: got.reason}
		}
		if got != want {
			t.Errorf("%s with Redis down: %+v, want %+v", kind, got, want)
		}
		if strings.Contains(got.reason, before[i]) {
			t.Errorf("close reason %q contains the ticket", got.reason)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s with Redis down took %v", kind, d)
		}
	}
	if e.app.calls() != 0 {
		t.Fatal("the consumer ran with Redis down")
	}

	r.Restart()
	for _, kind := range ticketKinds {
		tk := e.issue(t, time.Minute)
		if got := e.present(t, kind, tk, nil, false); got.greeting != "hello ada" {
			t.Errorf("%s after Restart: %+v", kind, got)
		}
	}
}

// leakyTicketStore answers like a careless store: its errors quote the ticket. The
// ticket's prefix chooses the answer.
type leakyTicketStore struct{}

func (leakyTicketStore) Issue(context.Context, canal.User, time.Duration) (string, error) {
	return "", errors.New("not used")
}

func (leakyTicketStore) Consume(ctx context.Context, tk string) (canal.User, error) {
	switch {
	case strings.HasPrefix(tk, "good"):
		return ada, nil
	case strings.HasPrefix(tk, "invalid"):
		return canal.User{}, fmt.Errorf("ticket %s: %w", tk, ticket.ErrInvalid)
	case strings.HasPrefix(tk, "down"):
		return canal.User{}, fmt.Errorf("GETDEL canal:ticket:%s: %w", tk, canal.ErrUnavailable)
	case strings.HasPrefix(tk, "broken"):
		return canal.User{}, fmt.Errorf("decode %s: unexpected EOF", tk)
	case strings.HasPrefix(tk, "anon"):
		return canal.User{}, nil
	case strings.HasPrefix(tk, "slow"):
		<-ctx.Done()
		return canal.User{}, fmt.Errorf("waiting for %s: %w", tk, ctx.Err())
	}
	return canal.User{}, ticket.ErrInvalid
}

// Store errors reach neither the client nor the logs with the ticket in them.
func TestTicketStoreErrorsOverSockets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		status int // before the upgrade
		code   int // first message
	}{
		{"invalid", 403, canal.CloseUnauthorized},
		{"anon", 403, canal.CloseUnauthorized},
		{"down", 503, canal.CloseInternalError},
		{"broken", 503, canal.CloseInternalError},
		{"slow", 503, canal.CloseInternalError},
	}
	e := newTicketEnv(t, leakyTicketStore{}, middleware.TicketOptions{Timeout: 50 * time.Millisecond}, nil)
	for _, tt := range tests {
		for _, kind := range ticketKinds {
			t.Run(tt.prefix+"/"+string(kind), func(t *testing.T) {
				t.Parallel()
				tk := e.remember(tt.prefix + "-secret-" + string(kind[0]) + "4f7d2a")
				got := e.present(t, kind, tk, nil, false)
				if kind == kindFirst {
					if got.code != tt.code || strings.Contains(got.reason, tk) {
						t.Fatalf("got %+v, want close %d", got, tt.code)
					}
					return
				}
				if got.status != tt.status {
					t.Fatalf("got %+v, want HTTP %d", got, tt.status)
				}
			})
		}
	}
}

// --- at the unit edge: Connect and the session on a fakeConn ---

func TestTicketOptionsInvalid(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	tests := []struct {
		name  string
		store middleware.TicketStore
		opts  middleware.TicketOptions
	}{
		{"nil store", nil, middleware.TicketOptions{}},
		{"negative AuthTimeout", store, middleware.TicketOptions{AuthTimeout: -time.Second}},
		{"negative Timeout", store, middleware.TicketOptions{Timeout: -time.Millisecond}},
		{"unknown transport", store, middleware.TicketOptions{Transports: 1 << 5}},
		{"marker with a space", store, middleware.TicketOptions{Subprotocol: "canal ticket"}},
		{"marker with a comma", store, middleware.TicketOptions{Subprotocol: "a,b"}},
		{"marker with a slash", store, middleware.TicketOptions{Subprotocol: "canal/ticket"}},
		{"marker non-ASCII", store, middleware.TicketOptions{Subprotocol: "tické"}},
		{"param with =", store, middleware.TicketOptions{Param: "a=b"}},
		{"param with &", store, middleware.TicketOptions{Param: "a&b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := middleware.Ticket(tt.store, tt.opts)
			if err == nil || mw != nil || !strings.HasPrefix(err.Error(), "middleware: Ticket: ") {
				t.Fatalf("got %v, %v; want an error", mw, err)
			}
		})
	}
	for _, ok := range []middleware.TicketOptions{
		{},
		{Transports: middleware.TransportQuery},
		{Transports: middleware.TransportSubprotocol | middleware.TransportFirstMessage, Subprotocol: "v1.auth", Param: "t"},
	} {
		if _, err := middleware.Ticket(store, ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// TestTicketStoreErrors checks every answer's status or code and that no error text
// holds the ticket, though the store's errors do.
func TestTicketStoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		status int
		code   int
		is     error
	}{
		{"invalid", 403, canal.CloseUnauthorized, ticket.ErrInvalid},
		{"anon", 403, canal.CloseUnauthorized, ticket.ErrInvalid},
		{"down", 503, canal.CloseInternalError, canal.ErrUnavailable},
		{"broken", 503, canal.CloseInternalError, nil},
		{"slow", 503, canal.CloseInternalError, context.DeadlineExceeded},
	}
	mw, err := middleware.Ticket(leakyTicketStore{}, middleware.TicketOptions{Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			t.Parallel()
			tk := tt.prefix + "-a9c03e"
			check := func(err error) {
				t.Helper()
				if strings.Contains(err.Error(), tk) {
					t.Errorf("error %q contains the ticket", err)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("error %v does not wrap %v", err, tt.is)
				}
			}
			for _, scope := range []*canal.Scope{
				{RawQuery: "ticket=" + tk},
				{Subprotocols: []string{marker, marker + "." + tk}},
			} {
				next := &okHandler{}
				c := newConn(scope)
				sess, err := mw(next).Connect(context.Background(), c)
				var rej *canal.RejectError
				if !errors.As(err, &rej) || rej.Status != tt.status || sess != nil || next.Calls() != 0 {
					t.Fatalf("%+v: got %v, %v; want HTTP %d", scope, sess, err, tt.status)
				}
				if strings.Contains(rej.Reason, tk) {
					t.Errorf("reason %q contains the ticket", rej.Reason)
				}
				check(err)
			}

			next := &okHandler{}
			c := newConn(nil)
			sess, err := mw(next).Connect(context.Background(), c)
			if err != nil || !c.Accepted() {
				t.Fatalf("first message: Connect = %v, accepted %v", err, c.Accepted())
			}
			defer sess.Disconnect(context.Background(), c, 1000)
			err = sess.Receive(context.Background(), c, canal.Text(`{"ticket":"`+tk+`"}`))
			var ce *canal.CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code || next.Calls() != 0 {
				t.Fatalf("first message: Receive = %v, want close %d", err, tt.code)
			}
			if strings.Contains(ce.Reason, tk) {
				t.Errorf("close reason %q contains the ticket", ce.Reason)
			}
			check(err)
		})
	}
}

// TestTicketConnectErrors: the next handler's refusals, after a first-message accept,
// become close codes.
func TestTicketConnectErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sess canal.Session
		err  error
		code int
	}{
		{"reject 403", nil, canal.Reject(403, "no"), canal.CloseForbidden},
		{"reject 0 is 403", nil, canal.Reject(0, "no"), canal.CloseForbidden},
		{"reject 401", nil, canal.Reject(401, "no"), canal.CloseUnauthorized},
		{"reject 404", nil, canal.Reject(404, "no route"), 4404},
		{"reject 429", nil, canal.Reject(429, "slow down"), 4429},
		{"reject 503", nil, canal.Reject(503, "busy"), canal.CloseTryAgainLater},
		{"reject 500", nil, canal.Reject(500, "bug"), canal.CloseInternalError},
		{"reject 302", nil, canal.Reject(302, "odd"), canal.CloseInternalError},
		{"wrapped reject", nil, fmt.Errorf("router: %w", canal.Reject(404, "")), 4404},
		{"close error", nil, &canal.CloseError{Code: 4000, Reason: "bye"}, 4000},
		{"plain error", nil, errors.New("boom"), canal.CloseInternalError},
		{"no session, no error", nil, nil, canal.CloseInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := ticket.NewMemory(ticket.MemoryOptions{})
			tk, err := store.Issue(context.Background(), ada, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			mw, err := middleware.Ticket(store, middleware.TicketOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var accepted bool
			next := canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
				accepted = c.Accepted() && c.Accept(canal.AcceptOptions{Subprotocol: "not-offered"}) == nil
				return tt.sess, tt.err
			})
			c := newConn(nil)
			sess, err := mw(next).Connect(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			err = sess.Receive(context.Background(), c, canal.Text(`{"ticket":"`+tk+`"}`))
			var ce *canal.CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("Receive = %v, want close %d", err, tt.code)
			}
			if !accepted {
				t.Error("the next handler's Conn is not accepted, or its Accept is not a no-op")
			}
			if c.scope.User.Username != "ada" {
				t.Errorf("scope.User = %+v", c.scope.User)
			}
			// The failed handshake leaves nothing to forward to.
			if err := sess.Event(context.Background(), c, canal.Message{"type": "x"}); err != nil {
				t.Fatal(err)
			}
			sess.Disconnect(context.Background(), c, 1000)
		})
	}
}

// recordingSession records what reaches the next handler's session.
type recordingSession struct {
	mu     sync.Mutex
	calls  []string
	conns  []canal.Conn
	failOn string
}

func (s *recordingSession) record(call string, c canal.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	s.conns = append(s.conns, c)
	if call == s.failOn {
		return &canal.CloseError{Code: 4000}
	}
	return nil
}

func (s *recordingSession) Receive(_ context.Context, c canal.Conn, f canal.Frame) error {
	return s.record("receive "+string(f.Data), c)
}

func (s *recordingSession) Event(_ context.Context, c canal.Conn, m canal.Message) error {
	return s.record("event "+m.Type(), c)
}

func (s *recordingSession) Disconnect(_ context.Context, c canal.Conn, code int) {
	_ = s.record(fmt.Sprint("disconnect ", code), c)
}

// TestTicketFirstMessageForwarding: after the ticket, frames, events and the
// disconnect reach the next session with the Conn its Connect saw.
func TestTicketFirstMessageForwarding(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	tk, err := store.Issue(context.Background(), ada, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := middleware.Ticket(store, middleware.TicketOptions{Transports: middleware.TransportFirstMessage})
	if err != nil {
		t.Fatal(err)
	}
	inner := &recordingSession{failOn: "receive boom"}
	var connectConn canal.Conn
	next := canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
		connectConn = c
		return inner, nil
	})
	c := newConn(nil)
	ctx := context.Background()
	sess, err := mw(next).Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		do   func() error
		want error
	}{
		{func() error { return sess.Event(ctx, c, canal.Message{"type": "early"}) }, nil},
		{func() error { return sess.Receive(ctx, c, canal.Text(`{"type":"auth","ticket":"`+tk+`","extra":1}`)) }, nil},
		{func() error { return sess.Receive(ctx, c, canal.Text("a")) }, nil},
		{func() error { return sess.Event(ctx, c, canal.Message{"type": "late"}) }, nil},
		{func() error { return sess.Receive(ctx, c, canal.Text("boom")) }, &canal.CloseError{Code: 4000}},
		{func() error { sess.Disconnect(ctx, c, 4000); return nil }, nil},
	}
	for i, s := range steps {
		err := s.do()
		if (err == nil) != (s.want == nil) || (err != nil && err.Error() != s.want.Error()) {
			t.Fatalf("step %d: %v, want %v", i, err, s.want)
		}
	}
	want := []string{"receive a", "event late", "receive boom", "disconnect 4000"}
	if !slices.Equal(inner.calls, want) {
		t.Fatalf("inner session got %q, want %q", inner.calls, want)
	}
	for _, got := range inner.conns {
		if got != connectConn {
			t.Fatal("the session got a Conn other than the one its Connect saw")
		}
	}
	if connectConn == canal.Conn(c) || connectConn.Scope() != c.scope {
		t.Fatal("the next handler got the server's Conn itself, or another scope")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		t.Fatalf("conn closed with %d", c.closeCode)
	}
}

// TestTicketFirstMessageDisconnectBeforeAuth: a Disconnect before the ticket stops
// the timer and forwards nothing; a frame that loses the race with the timer is
// refused with 4408 and consumes nothing.
func TestTicketFirstMessageDisconnectBeforeAuth(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	next := &okHandler{}
	connect := func(authTimeout time.Duration) (*fakeConn, canal.Session) {
		t.Helper()
		mw, err := middleware.Ticket(store, middleware.TicketOptions{AuthTimeout: authTimeout})
		if err != nil {
			t.Fatal(err)
		}
		c := newConn(nil)
		sess, err := mw(next).Connect(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		return c, sess
	}

	c, sess := connect(300 * time.Millisecond)
	sess.Disconnect(context.Background(), c, canal.CloseAbnormal)
	select {
	case <-c.Context().Done():
		t.Fatalf("closed with %d after Disconnect", c.closeCode)
	case <-time.After(500 * time.Millisecond):
	}

	c2, sess2 := connect(10 * time.Millisecond)
	select {
	case <-c2.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the auth timer never fired")
	}
	c2.mu.Lock()
	code := c2.closeCode
	c2.mu.Unlock()
	if code != canal.CloseAuthTimeout {
		t.Fatalf("timer closed with %d, want %d", code, canal.CloseAuthTimeout)
	}
	tk, err := store.Issue(context.Background(), ada, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	err = sess2.Receive(context.Background(), c2, canal.Text(`{"ticket":"`+tk+`"}`))
	var ce *canal.CloseError
	if !errors.As(err, &ce) || ce.Code != canal.CloseAuthTimeout {
		t.Fatalf("late frame: %v, want close %d", err, canal.CloseAuthTimeout)
	}
	sess2.Disconnect(context.Background(), c2, canal.CloseAuthTimeout)
	if next.Calls() != 0 {
		t.Fatalf("next ran %d times", next.Calls())
	}
	if _, err := store.Consume(context.Background(), tk); err != nil {
		t.Fatalf("the late frame consumed its ticket: %v", err)
	}
}

// TestTicketScrubs checks what the next handler sees of the query and subprotocols.
func TestTicketScrubs(t *testing.T) {
	t.Parallel()
	const tk = "Zm9vYmFyLXRpY2tldC0xMjM0NTY3ODkw"
	tests := []struct {
		name       string
		query      string
		protocols  []string // one header line each
		opts       middleware.TicketOptions
		wantQuery  string
		wantProtos []string
		wantHeader []string
	}{
		{name: "only param", query: "ticket=" + tk, wantQuery: ""},
		{name: "middle param", query: "a=1&ticket=" + tk + "&b=2", wantQuery: "a=1&b=2"},
		{name: "encoded key, repeats, empty", query: "ticket=&a=%zz&ti%63ket=" + tk + "&ticket=" + tk + "x&b", wantQuery: "a=%zz&b"},
		{name: "similar keys kept", query: "tickets=1&xticket=2&ticket=" + tk, wantQuery: "tickets=1&xticket=2"},
		{name: "custom param", query: "ticket=keep&t=" + tk, opts: middleware.TicketOptions{Param: "t"}, wantQuery: "ticket=keep"},
		{name: "untouched query", query: "a=1&&b=%41", protocols: []string{marker + "." + tk}, wantQuery: "a=1&&b=%41"},
		{
			name:       "bearer among app protocols, several header lines",
			protocols:  []string{"chat.v1, " + marker + "." + tk, marker, marker + "." + tk + "x"},
			wantProtos: []string{"chat.v1", marker},
			wantHeader: []string{"chat.v1", marker},
		},
		{
			name:       "bearer only",
			protocols:  []string{marker + "." + tk},
			wantProtos: []string{},
			wantHeader: nil,
		},
		{
			name:       "custom marker",
			protocols:  []string{"v2.auth, v2.auth." + tk + ", " + marker + ".other"},
			opts:       middleware.TicketOptions{Subprotocol: "v2.auth"},
			wantProtos: []string{"v2.auth", marker + ".other"},
			wantHeader: []string{"v2.auth, " + marker + ".other"},
		},
		{
			name:       "query wins, bearer still stripped",
			query:      "ticket=" + tk,
			protocols:  []string{marker, marker + ".unconsumed"},
			wantProtos: []string{marker},
			wantHeader: []string{marker},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			consume := ticketStoreFunc(func(_ context.Context, s string) (canal.User, error) {
				got = append(got, s)
				if s == tk {
					return ada, nil
				}
				return canal.User{}, ticket.ErrInvalid
			})
			mw, err := middleware.Ticket(consume, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			var offered []string
			for _, line := range tt.protocols {
				h.Add("Sec-Websocket-Protocol", line)
				for p := range strings.SplitSeq(line, ",") {
					offered = append(offered, strings.TrimSpace(p))
				}
			}
			scope := &canal.Scope{RawQuery: tt.query, Headers: h, Subprotocols: offered}
			var seen seenScope
			next := canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
				s := c.Scope()
				seen = seenScope{user: s.User, rawQuery: s.RawQuery, subprotocols: s.Subprotocols, header: s.Headers.Values("Sec-Websocket-Protocol")}
				return &nopSession{}, c.Accept(canal.AcceptOptions{})
			})
			if _, err := mw(next).Connect(context.Background(), newConn(scope)); err != nil {
				t.Fatalf("Connect: %v (consumed %q)", err, got)
			}
			if !slices.Equal(got, []string{tk}) {
				t.Errorf("consumed %q, want just the ticket", got)
			}
			if seen.rawQuery != tt.wantQuery {
				t.Errorf("RawQuery = %q, want %q", seen.rawQuery, tt.wantQuery)
			}
			if tt.wantProtos != nil && !slices.Equal(seen.subprotocols, tt.wantProtos) {
				t.Errorf("Subprotocols = %q, want %q", seen.subprotocols, tt.wantProtos)
			}
			if len(tt.protocols) > 0 && !slices.Equal(seen.header, tt.wantHeader) {
				t.Errorf("header = %q, want %q", seen.header, tt.wantHeader)
			}
			if all := fmt.Sprint(seen.rawQuery, seen.subprotocols, seen.header); strings.Contains(all, tk) {
				t.Errorf("the next handler sees the ticket: %s", all)
			}
		})
	}
}

type ticketStoreFunc func(ctx context.Context, tk string) (canal.User, error)

func (f ticketStoreFunc) Consume(ctx context.Context, tk string) (canal.User, error) {
	return f(ctx, tk)
}

// TestTicketPendingAccept: a session that accepts later, from an event, still selects
// the marker when the app names no subprotocol.
func TestTicketPendingAccept(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	later := canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		return acceptLater{}, nil
	})
	e := &ticketEnv{store: store, app: &greeter{}, logs: &canaltest.LogBuffer{}, conns: make(chan canal.Conn, 1)}
	auth, err := middleware.Ticket(store, middleware.TicketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	capture := func(next canal.Handler) canal.Handler {
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			e.conns <- c
			return next.Connect(ctx, c)
		})
	}
	srv := canaltest.NewServer(t, middleware.Stack(capture, auth)(later), server.Options{})
	tk := e.issue(t, time.Minute)
	go func() {
		c := <-e.conns
		c.Deliver(canal.Message{"type": "go"})
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := canaltest.Dial(ctx, srv.URL("/ws/"), canaltest.DialOptions{Subprotocols: []string{marker, marker + "." + tk}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	if c.Subprotocol != marker {
		t.Fatalf("101 subprotocol = %q, want %q", c.Subprotocol, marker)
	}
	if got, err := c.ReceiveText(ctx); err != nil || got != "late ada" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// acceptLater accepts on its first event.
type acceptLater struct{}

func (acceptLater) Receive(context.Context, canal.Conn, canal.Frame) error { return nil }
func (acceptLater) Event(_ context.Context, c canal.Conn, _ canal.Message) error {
	if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return err
	}
	return c.Send(canal.Text("late " + c.Scope().User.Username))
}
func (acceptLater) Disconnect(context.Context, canal.Conn, int) {}

// TestTicketEventStreamNeedsTicketUpfront: an event stream cannot send a first message,
// so a stream without a ticket is refused at once instead of waiting for one.
func TestTicketEventStreamNeedsTicketUpfront(t *testing.T) {
	t.Parallel()
	auth, err := middleware.Ticket(ticket.NewMemory(ticket.MemoryOptions{}), middleware.TicketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(&canal.Scope{Type: "sse", Path: "/events/"})
	_, err = auth(echo).Connect(context.Background(), c)
	var re *canal.RejectError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || c.Accepted() {
		t.Fatalf("Connect: %v (accepted: %v), want HTTP 403 before any accept", err, c.Accepted())
	}
}
