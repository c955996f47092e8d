package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
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
	return canal.User{}, nil // dead or unknown: a session of nobody
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
	for _, o := range []middleware.DjangoSessionOptions{
		{Token: "t"},
		{URL: "ftp://127.0.0.1/session/", Token: "t"},
		{URL: "http:///session/", Token: "t"},
		{URL: "http://127.0.0.1:8000/session/"},
	} {
		if _, err := middleware.DjangoSessionLookup(o); err == nil {
			t.Fatalf("DjangoSessionLookup(%+v) accepted", o)
		}
	}
}

// TestDjangoSessionLookupAnswers covers how the lookup reads the endpoint's answers,
// against a stand-in endpoint (the narrow edge). The real django_canal endpoint is
// exercised end to end in examples/django and by python/tests/test_session.py.
func TestDjangoSessionLookupAnswers(t *testing.T) {
	t.Parallel()
	const token = "shared-secret-0123456789abcdef0123"
	tests := []struct {
		name     string
		status   int
		body     string
		wantUser canal.User
		wantErr  bool
	}{
		{name: "user", status: 200, body: `{"user":{"id":42,"username":"ada","is_staff":true}}`, wantUser: canal.User{ID: "42", Username: "ada"}},
		{name: "nobody", status: 200, body: `{"user":null}`},
		{name: "no user key", status: 200, body: `{}`, wantErr: true},
		{name: "user without username", status: 200, body: `{"user":{"id":42}}`, wantErr: true},
		{name: "not JSON", status: 200, body: `<html>`, wantErr: true},
		{name: "bad token", status: 401, body: `{"error":"bad token"}`, wantErr: true},
		{name: "disabled", status: 404, body: `{"error":"session endpoint disabled"}`, wantErr: true},
		{name: "redirect", status: 302, body: ``, wantErr: true},
		{name: "server error", status: 500, body: `oops`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var gotAuth, gotBody string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth = r.Header.Get("Authorization")
				b, _ := io.ReadAll(r.Body)
				gotBody = string(b)
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere/")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			lookup, err := middleware.DjangoSessionLookup(middleware.DjangoSessionOptions{URL: srv.URL + "/session/", Token: token})
			if err != nil {
				t.Fatal(err)
			}
			u, err := lookup(context.Background(), liveKey)
			if gotAuth != "Bearer "+token || gotBody != `{"session_key":"`+liveKey+`"}` {
				t.Fatalf("request had Authorization %q, body %q", gotAuth, gotBody)
			}
			if tt.wantErr {
				if !errors.Is(err, canal.ErrUnavailable) {
					t.Fatalf("got %+v, %v; want an error wrapping canal.ErrUnavailable", u, err)
				}
				if strings.Contains(err.Error(), liveKey) || strings.Contains(err.Error(), token) {
					t.Fatalf("error %q carries a secret", err)
				}
				return
			}
			if err != nil || u.ID != tt.wantUser.ID || u.Username != tt.wantUser.Username {
				t.Fatalf("got %+v, %v; want %+v", u, err, tt.wantUser)
			}
		})
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
