package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/ticket"
)

// Secret-looking session keys, so that a leak into an error string is easy to spot.
const (
	liveKey  = "live-2c81f07a"
	deadKey  = "dead-93be1d44"
	downKey  = "down-5a1e66c0"
	leakyKey = "leaky-0f7d2b9e"
	slowKey  = "slow-7e43a1c5"
)

func sessionLookup(ctx context.Context, key string) (canal.User, error) {
	switch key {
	case liveKey:
		return canal.User{ID: "42", Username: "ada"}, nil
	case downKey:
		return canal.User{}, fmt.Errorf("session store: %w", canal.ErrUnavailable)
	case leakyKey:
		return canal.User{}, fmt.Errorf("no row for session %s", key)
	case slowKey:
		<-ctx.Done()
		return canal.User{}, ctx.Err()
	}
	return canal.User{}, fmt.Errorf("sessions: %w", auth.ErrInvalid) // dead or unknown
}

func cookieConn(cookie string) *fakeConn {
	h := http.Header{}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	return newConn(&canal.Scope{Path: "/ws/", Headers: h})
}

func TestSession(t *testing.T) {
	t.Parallel()
	ada := canal.User{ID: "42", Username: "ada"}
	tests := []struct {
		name     string
		opts     middleware.SessionOptions
		cookie   string
		status   int // 0: next runs
		wantUser canal.User
	}{
		{name: "live session", cookie: "csrftoken=x; sessionid=" + liveKey, wantUser: ada},
		{name: "renamed cookie", opts: middleware.SessionOptions{Cookie: "sid"}, cookie: "sid=" + liveKey, wantUser: ada},
		{name: "other cookie name ignored", opts: middleware.SessionOptions{Cookie: "sid"}, cookie: "sessionid=" + liveKey},
		{name: "no cookie: anonymous"},
		{name: "no cookie, required", opts: middleware.SessionOptions{Required: true}, status: 403},
		{name: "session of nobody: anonymous", cookie: "sessionid=" + deadKey},
		{name: "session of nobody, required", opts: middleware.SessionOptions{Required: true}, cookie: "sessionid=" + deadKey, status: 403},
		{name: "store down fails closed", cookie: "sessionid=" + downKey, status: 503},
		{name: "lookup error fails closed", cookie: "sessionid=" + leakyKey, status: 503},
		{name: "lookup timeout fails closed", opts: middleware.SessionOptions{Timeout: 20 * time.Millisecond}, cookie: "sessionid=" + slowKey, status: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := middleware.Session(sessionLookup, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var reached bool
			h := mw(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
				reached = true
				return nil, nil
			}))
			c := cookieConn(tt.cookie)
			_, err = h.Connect(context.Background(), c)
			if tt.status == 0 {
				if err != nil || !reached {
					t.Fatalf("Connect: %v (next ran: %v), want the next handler", err, reached)
				}
				if c.scope.User.ID != tt.wantUser.ID || c.scope.User.Username != tt.wantUser.Username {
					t.Fatalf("scope.User = %+v, want %+v", c.scope.User, tt.wantUser)
				}
				return
			}
			var re *canal.RejectError
			if !errors.As(err, &re) || re.Status != tt.status || reached {
				t.Fatalf("Connect: %v (next ran: %v), want HTTP %d", err, reached, tt.status)
			}
			for _, key := range []string{liveKey, deadKey, downKey, leakyKey, slowKey} {
				if strings.Contains(err.Error(), key) || strings.Contains(re.Reason, key) {
					t.Fatalf("refusal %q / %q contains the session key", err, re.Reason)
				}
			}
		})
	}
}

func TestSessionOptionsInvalid(t *testing.T) {
	t.Parallel()
	if _, err := middleware.Session(nil, middleware.SessionOptions{}); err == nil {
		t.Fatal("nil lookup accepted")
	}
	if _, err := middleware.Session(sessionLookup, middleware.SessionOptions{Timeout: -time.Second}); err == nil {
		t.Fatal("negative timeout accepted")
	}
}

// TestSessionNobodyWithoutError: a verifier that answers an anonymous user without an
// error is read as "nobody", never as a user.
func TestSessionNobodyWithoutError(t *testing.T) {
	t.Parallel()
	anonymous := func(context.Context, string) (canal.User, error) { return canal.User{}, nil }
	for _, required := range []bool{false, true} {
		mw, err := middleware.Session(anonymous, middleware.SessionOptions{Required: required})
		if err != nil {
			t.Fatal(err)
		}
		var reached bool
		h := mw(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
			reached = true
			return nil, nil
		}))
		c := cookieConn("sessionid=" + liveKey)
		_, err = h.Connect(context.Background(), c)
		var re *canal.RejectError
		switch {
		case required && (!errors.As(err, &re) || re.Status != 403 || reached):
			t.Fatalf("required: %v (next ran: %v), want 403", err, reached)
		case !required && (err != nil || !reached || c.scope.User.Authenticated()):
			t.Fatalf("not required: %v, user %+v; want anonymous", err, c.scope.User)
		}
	}
}

// TestSessionWithDjango: Session over auth.Django (Kind "session") against django_canal's
// test project served by runserver: the session lookup is one kind of the family.
func TestSessionWithDjango(t *testing.T) {
	site := canaltest.StartDjangoTests(t, "middleware-session-secret-"+strings.Repeat("5", 16))
	transport := &http.Transport{Proxy: nil}
	t.Cleanup(transport.CloseIdleConnections)
	verify, err := auth.Django(auth.DjangoOptions{
		URL: site.URL + "/auth/", Token: site.Secret, Kind: "session",
		Client: &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	})
	if err != nil {
		t.Fatal(err)
	}
	mw, err := middleware.Session(verify, middleware.SessionOptions{Required: true})
	if err != nil {
		t.Fatal(err)
	}
	h := mw(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) { return nil, nil }))
	connect := func(cookie string) (*fakeConn, error) {
		c := cookieConn(cookie)
		_, err := h.Connect(context.Background(), c)
		return c, err
	}
	alice, idle := site.Users["alice"]["session"], site.Users["idle"]["session"]

	c, err := connect("sessionid=" + alice)
	if err != nil || c.scope.User.Username != "alice" || c.scope.User.ID != site.Users["alice"]["id"] {
		t.Fatalf("alice's session: user %+v, %v", c.scope.User, err)
	}
	if c.scope.User.Attrs["email"] != "alice@example.com" {
		t.Fatalf("alice's claims: %+v", c.scope.User.Attrs)
	}
	for name, cookie := range map[string]string{"inactive user": "sessionid=" + idle, "unknown key": "sessionid=" + strings.Repeat("x", 32), "no cookie": ""} {
		var re *canal.RejectError
		if _, err := connect(cookie); !errors.As(err, &re) || re.Status != 403 {
			t.Fatalf("%s: %v, want 403", name, err)
		}
	}
	site.Stop()
	_, err = connect("sessionid=" + alice)
	var re *canal.RejectError
	if !errors.As(err, &re) || re.Status != 503 {
		t.Fatalf("Django down: %v, want 503", err)
	}
	if strings.Contains(err.Error(), alice) || strings.Contains(err.Error(), site.Secret) {
		t.Fatalf("refusal %q carries a secret", err)
	}
	if log := site.Log(); strings.Contains(log, alice) || strings.Contains(log, idle) || strings.Contains(log, site.Secret) {
		t.Fatalf("Django's log carries a secret:\n%s", log)
	}
}

// TestSessionThenTicket: Stack(Session, Ticket) accepts a live session cookie without a
// ticket, still checks a ticket when one is sent (its user wins), and asks visitors
// with neither for a ticket.
func TestSessionThenTicket(t *testing.T) {
	t.Parallel()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	session, err := middleware.Session(sessionLookup, middleware.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := middleware.Ticket(store, middleware.TicketOptions{Transports: middleware.TransportQuery})
	if err != nil {
		t.Fatal(err)
	}
	grace, err := store.Issue(context.Background(), canal.User{ID: "7", Username: "grace"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cookie, query string
		status              int
		wantName            string
	}{
		{name: "cookie, no ticket", cookie: "sessionid=" + liveKey, wantName: "ada"},
		{name: "cookie and ticket: the ticket's user", cookie: "sessionid=" + liveKey, query: "ticket=" + grace, wantName: "grace"},
		{name: "cookie and a used ticket", cookie: "sessionid=" + liveKey, query: "ticket=" + grace, status: 403},
		{name: "dead cookie, no ticket", cookie: "sessionid=" + deadKey, status: 403},
		{name: "neither", status: 403},
	}
	for _, tt := range tests { // in order: the ticket is used once
		var got canal.User
		h := middleware.Stack(session, auth)(canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
			got = c.Scope().User
			return nil, nil
		}))
		c := cookieConn(tt.cookie)
		c.scope.RawQuery = tt.query
		_, err := h.Connect(context.Background(), c)
		var re *canal.RejectError
		switch {
		case tt.status != 0 && (!errors.As(err, &re) || re.Status != tt.status):
			t.Fatalf("%s: %v, want HTTP %d", tt.name, err, tt.status)
		case tt.status == 0 && (err != nil || got.Username != tt.wantName):
			t.Fatalf("%s: user %+v, %v; want %s", tt.name, got, err, tt.wantName)
		}
	}
}
