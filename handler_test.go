package canal_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/canal-rt/canal"
)

// pathMatcher is a root that serves one path, as a router with one route does.
type pathMatcher struct {
	path  string
	calls int
}

func (m *pathMatcher) Connect(context.Context, canal.Conn) (canal.Session, error) {
	m.calls++
	return nil, nil
}

func (m *pathMatcher) Matches(s *canal.Scope) bool { return s.Path == m.path }

// scopeConn is a Conn with a scope and nothing else.
type scopeConn struct {
	canal.Conn
	s *canal.Scope
}

func (c scopeConn) Scope() *canal.Scope { return c.s }

func TestChainMatches(t *testing.T) {
	t.Parallel()
	ran := 0
	mw := func(next canal.Handler) canal.Handler {
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			ran++
			return next.Connect(ctx, c)
		})
	}
	leaf := &pathMatcher{path: "/ws/chat/"}
	plain := canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) { return nil, nil })
	tests := []struct {
		name    string
		h       canal.Handler
		matcher bool // the result is a Matcher
		match   bool // ... and matches /ws/chat/
		miss    bool // ... and matches /ws/nope/ (a non-Matcher takes everything)
	}{
		{name: "chain around a matcher", h: canal.Chain{mw, mw}.Then(leaf), matcher: true, match: true},
		{name: "chains nested", h: canal.Chain{mw}.Then(canal.Chain{mw}.Then(leaf)), matcher: true, match: true},
		{name: "empty chain returns the matcher itself", h: canal.Chain{}.Then(leaf), matcher: true, match: true},
		{name: "chain around a plain handler", h: canal.Chain{mw}.Then(plain), match: true, miss: true},
		{name: "middleware by hand hides the matcher", h: mw(leaf), match: true, miss: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := tt.h.(canal.Matcher); ok != tt.matcher {
				t.Fatalf("Matcher = %v, want %v", ok, tt.matcher)
			}
			if got := canal.Matches(tt.h, &canal.Scope{Path: "/ws/chat/"}); got != tt.match {
				t.Errorf("Matches(/ws/chat/) = %v, want %v", got, tt.match)
			}
			if got := canal.Matches(tt.h, &canal.Scope{Path: "/ws/nope/"}); got != tt.miss {
				t.Errorf("Matches(/ws/nope/) = %v, want %v", got, tt.miss)
			}
		})
	}
	// Matching runs none of the middleware; Connect runs all of it, then the leaf.
	ran, leaf.calls = 0, 0
	h := canal.Chain{mw, mw}.Then(leaf)
	canal.Matches(h, &canal.Scope{Path: "/ws/chat/"})
	if ran != 0 || leaf.calls != 0 {
		t.Fatalf("Matches ran %d middleware, %d leaf calls", ran, leaf.calls)
	}
	if _, err := h.Connect(context.Background(), scopeConn{s: &canal.Scope{Path: "/ws/chat/"}}); err != nil {
		t.Fatal(err)
	}
	if ran != 2 || leaf.calls != 1 {
		t.Fatalf("Connect ran %d middleware, %d leaf calls; want 2, 1", ran, leaf.calls)
	}
}

// Connect through a chain around a Matcher allocates nothing of its own.
func TestChainConnectAllocs(t *testing.T) {
	pass := func(next canal.Handler) canal.Handler {
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			return next.Connect(ctx, c)
		})
	}
	h := canal.Chain{pass, pass}.Then(&pathMatcher{path: "/"})
	c := scopeConn{s: &canal.Scope{Path: "/"}}
	ctx := context.Background()
	var conn canal.Conn = c
	if n := testing.AllocsPerRun(100, func() { _, _ = h.Connect(ctx, conn) }); n != 0 {
		t.Fatalf("Connect: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { canal.Matches(h, c.s) }); n != 0 {
		t.Fatalf("Matches: %v allocations", n)
	}
}

func TestCloseFor(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes
	tests := []struct {
		name   string
		err    error
		code   int
		reason string
	}{
		{"close error", &canal.CloseError{Code: 4000, Reason: "bye"}, 4000, "bye"},
		{"wrapped close error", fmt.Errorf("x: %w", &canal.CloseError{Code: canal.CloseTryAgainLater}), canal.CloseTryAgainLater, ""},
		{"reject 401", canal.Reject(http.StatusUnauthorized, "invalid token"), canal.CloseUnauthorized, "invalid token"},
		{"reject 403", canal.Reject(0, "not a member"), canal.CloseForbidden, "not a member"},
		{"reject 404", canal.Reject(http.StatusNotFound, "no such room"), 4404, "no such room"},
		{"reject 429", canal.Reject(http.StatusTooManyRequests, ""), 4429, ""},
		{"reject 503", &canal.RejectError{Status: 503, Reason: "channel layer unavailable", Err: canal.ErrUnavailable}, canal.CloseTryAgainLater, "channel layer unavailable"},
		{"reject 500", canal.Reject(http.StatusInternalServerError, "panic"), canal.CloseInternalError, "panic"},
		{"other error keeps its text private", errors.New("db password=hunter2"), canal.CloseInternalError, ""},
		{"long reason cut on a rune boundary", canal.Reject(403, long), canal.CloseForbidden, strings.Repeat("é", 61)},
	}
	for _, tt := range tests {
		code, reason := canal.CloseFor(tt.err)
		if code != tt.code || reason != tt.reason {
			t.Errorf("%s: CloseFor = %d %q, want %d %q", tt.name, code, reason, tt.code, tt.reason)
		}
		if !canal.ValidAppCloseCode(code) {
			t.Errorf("%s: %d is not a code an application may send", tt.name, code)
		}
	}
}
