package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/middleware"
)

// Secret-looking tokens, so that a leak into an error string is easy to spot.
const (
	goodToken  = "good-3f9a1c"
	plusToken  = "a+b/c=="
	badToken   = "bad-77e2d0"
	leakyToken = "leaky-51b6ce"
	downToken  = "down-0c4e88"
	brokeToken = "broke-a90f13"
	anonToken  = "anon-6d2b7e"
	slowToken  = "slow-e81f45"
)

// testLookup resolves the tokens above. Some errors deliberately quote the token, as
// careless lookups do, to check that QueryToken scrubs it.
func testLookup(ctx context.Context, token string) (canal.User, error) {
	switch token {
	case goodToken:
		return canal.User{ID: "42", Username: "ada"}, nil
	case plusToken:
		return canal.User{ID: "7", Username: "plus"}, nil
	case badToken:
		return canal.User{}, middleware.ErrInvalidToken
	case leakyToken:
		return canal.User{}, fmt.Errorf("token %q not found: %w", token, middleware.ErrInvalidToken)
	case downToken:
		return canal.User{}, fmt.Errorf("redis GET ticket:%s: %w", token, canal.ErrUnavailable)
	case brokeToken:
		return canal.User{}, fmt.Errorf("decode row for %s: unexpected EOF", token)
	case anonToken:
		return canal.User{}, nil
	case slowToken:
		<-ctx.Done()
		return canal.User{}, fmt.Errorf("lookup %s: %w", token, ctx.Err())
	}
	return canal.User{}, fmt.Errorf("lookup: %w", middleware.ErrInvalidToken)
}

func TestQueryToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     middleware.QueryTokenOptions
		query    string
		preset   canal.User // scope.User before the middleware
		status   int        // 0: next runs
		wantUser canal.User
		is       error // the refusal wraps it
	}{
		{name: "valid", query: "token=" + goodToken, wantUser: canal.User{ID: "42", Username: "ada"}},
		{name: "valid among other params", query: "room=1&%zz=1&token=" + goodToken + "&x=%zz", wantUser: canal.User{ID: "42", Username: "ada"}},
		{name: "percent-encoded", query: "token=a%2Bb%2Fc%3D%3D", wantUser: canal.User{ID: "7", Username: "plus"}},
		{name: "encoded key", query: "to%6Ben=" + goodToken, wantUser: canal.User{ID: "42", Username: "ada"}},
		{name: "first non-empty value", query: "token=&token=" + goodToken + "&token=" + badToken, wantUser: canal.User{ID: "42", Username: "ada"}},
		{name: "custom param", opts: middleware.QueryTokenOptions{Param: "ticket"}, query: "token=" + badToken + "&ticket=" + goodToken, wantUser: canal.User{ID: "42", Username: "ada"}},
		{name: "missing, optional", query: "room=1"},
		{name: "missing, optional, keeps earlier user", query: "", preset: canal.User{ID: "9"}, wantUser: canal.User{ID: "9"}},
		{name: "empty value, optional", query: "token="},
		{name: "missing, required", opts: middleware.QueryTokenOptions{Required: true}, query: "room=1", status: 403},
		{name: "empty value, required", opts: middleware.QueryTokenOptions{Required: true}, query: "token=", status: 403},
		{name: "other param only, required", opts: middleware.QueryTokenOptions{Param: "ticket", Required: true}, query: "token=" + goodToken, status: 403},
		{name: "invalid", query: "token=" + badToken, status: 403, is: middleware.ErrInvalidToken},
		{name: "invalid, error quotes token", query: "token=" + leakyToken, status: 403, is: middleware.ErrInvalidToken},
		{name: "undecodable", query: "token=%zz" + goodToken, status: 403, is: middleware.ErrInvalidToken},
		{name: "anonymous user without error", query: "token=" + anonToken, status: 403, is: middleware.ErrInvalidToken},
		{name: "unavailable", query: "token=" + downToken, status: 503, is: canal.ErrUnavailable},
		{name: "other error", query: "token=" + brokeToken, status: 503},
		{name: "timeout", opts: middleware.QueryTokenOptions{Timeout: 10 * time.Millisecond}, query: "token=" + slowToken, status: 503, is: context.DeadlineExceeded},
	}
	secrets := []string{goodToken, badToken, leakyToken, downToken, brokeToken, anonToken, slowToken, "%zz"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := middleware.QueryToken(testLookup, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			next := &okHandler{}
			c := newConn(&canal.Scope{Path: "/ws/", RawQuery: tt.query, User: tt.preset})
			sess, err := mw(next).Connect(context.Background(), c)
			if tt.status == 0 {
				if err != nil || sess == nil || next.Calls() != 1 {
					t.Fatalf("want next to run, got session %v, err %v", sess, err)
				}
				if next.user.ID != tt.wantUser.ID || next.user.Username != tt.wantUser.Username {
					t.Fatalf("user = %+v, want %+v", next.user, tt.wantUser)
				}
				return
			}
			var rej *canal.RejectError
			if !errors.As(err, &rej) || rej.Status != tt.status {
				t.Fatalf("err = %v, want *canal.RejectError %d", err, tt.status)
			}
			if sess != nil || next.Calls() != 0 || c.scope.User.Authenticated() {
				t.Fatalf("refused, but session %v, next calls %d, user %+v", sess, next.Calls(), c.scope.User)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, does not wrap %v", err, tt.is)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) || strings.Contains(rej.Reason, s) {
					t.Fatalf("refusal leaks token %q: %q", s, err)
				}
			}
		})
	}
}

func TestQueryTokenConstructor(t *testing.T) {
	t.Parallel()
	if mw, err := middleware.QueryToken(nil, middleware.QueryTokenOptions{}); err == nil || mw != nil || !strings.HasPrefix(err.Error(), "middleware: ") {
		t.Fatalf("nil lookup: %v, %v", mw, err)
	}
	if _, err := middleware.QueryToken(testLookup, middleware.QueryTokenOptions{Timeout: -time.Second}); err == nil {
		t.Fatal("negative timeout accepted")
	}
}

// The lookup gets the handshake's context, so a client that goes away stops it.
func TestQueryTokenPassesContext(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	var got any
	mw, err := middleware.QueryToken(func(ctx context.Context, token string) (canal.User, error) {
		got = ctx.Value(ctxKey{})
		return canal.User{ID: "1"}, nil
	}, middleware.QueryTokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), ctxKey{}, "handshake")
	if _, err := mw(&okHandler{}).Connect(ctx, newConn(&canal.Scope{RawQuery: "token=x"})); err != nil {
		t.Fatal(err)
	}
	if got != "handshake" {
		t.Fatalf("lookup context value = %v", got)
	}
}
