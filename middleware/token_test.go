package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/server"
)

// Secret-looking tokens, so that a leak into an error string is easy to spot.
const (
	goodToken  = "good-3f9a1c"
	plusToken  = "a+b/c=="
	signToken  = "42:1tPZ3b:Xq0Kj0" // django.core.signing: ':' is no subprotocol character
	badToken   = "bad-77e2d0"
	leakyToken = "leaky-51b6ce"
	downToken  = "down-0c4e88"
	brokeToken = "broke-a90f13"
	anonToken  = "anon-6d2b7e"
	slowToken  = "slow-e81f45"
)

var allTokens = []string{goodToken, plusToken, signToken, badToken, leakyToken, downToken, brokeToken, anonToken, slowToken}

// testLookup resolves the tokens above. Some errors deliberately quote the token, as
// careless verifiers do, to check that Token scrubs it.
func testLookup(ctx context.Context, token string) (canal.User, error) {
	switch token {
	case goodToken:
		return canal.User{ID: "42", Username: "ada"}, nil
	case plusToken:
		return canal.User{ID: "7", Username: "plus"}, nil
	case signToken:
		return canal.User{ID: "8", Username: "signed"}, nil
	case badToken:
		return canal.User{}, auth.ErrInvalid
	case leakyToken:
		return canal.User{}, fmt.Errorf("token %q not found: %w", token, auth.ErrInvalid)
	case downToken:
		return canal.User{}, fmt.Errorf("redis GET token:%s: %w", token, canal.ErrUnavailable)
	case brokeToken:
		return canal.User{}, fmt.Errorf("decode row for %s: unexpected EOF", token)
	case anonToken:
		return canal.User{}, nil
	case slowToken:
		<-ctx.Done()
		return canal.User{}, fmt.Errorf("lookup %s: %w", token, ctx.Err())
	}
	return canal.User{}, fmt.Errorf("lookup: %w", auth.ErrInvalid)
}

// TestTokenBeforeUpgrade: the outcomes of the query and subprotocol transports, and of
// a connection with no token, at the unit edge.
func TestTokenBeforeUpgrade(t *testing.T) {
	t.Parallel()
	sub := func(entries ...string) []string { return append([]string{"canal.token"}, entries...) }
	ada := canal.User{ID: "42", Username: "ada"}
	tests := []struct {
		name     string
		opts     middleware.TokenOptions
		query    string
		protos   []string
		preset   canal.User // scope.User before the middleware
		status   int        // 0: next runs
		reason   string
		wantUser canal.User
		wantOpen bool // no token: accepted, waiting for the first message
		is       error
	}{
		{name: "query", query: "token=" + goodToken, wantUser: ada},
		{name: "query among other params", query: "room=1&%zz=1&token=" + goodToken + "&x=%zz", wantUser: ada},
		{name: "query percent-encoded", query: "token=a%2Bb%2Fc%3D%3D", wantUser: canal.User{ID: "7", Username: "plus"}},
		{name: "query encoded key", query: "to%6Ben=" + goodToken, wantUser: ada},
		{name: "query first non-empty value", query: "token=&token=" + goodToken + "&token=" + badToken, wantUser: ada},
		{name: "query custom param", opts: middleware.TokenOptions{Param: "key"}, query: "token=" + badToken + "&key=" + goodToken, wantUser: ada},
		{name: "subprotocol", protos: sub("canal.token." + goodToken), wantUser: ada},
		{name: "subprotocol base64url", protos: sub("canal.token-b64.NDI6MXRQWjNiOlhxMEtqMA"), wantUser: canal.User{ID: "8", Username: "signed"}},
		{name: "subprotocol via BearerProtocol", protos: sub(middleware.BearerProtocol("canal.token", plusToken)), wantUser: canal.User{ID: "7", Username: "plus"}},
		{name: "subprotocol custom marker", opts: middleware.TokenOptions{Subprotocol: "v1.auth"}, protos: []string{"v1.auth", "v1.auth." + goodToken}, wantUser: ada},
		{name: "query wins over subprotocol", query: "token=" + goodToken, protos: sub("canal.token." + badToken), wantUser: ada},
		{name: "anonymous: no token", opts: middleware.TokenOptions{Anonymous: true}, query: "room=1"},
		{name: "anonymous: keeps earlier user", opts: middleware.TokenOptions{Anonymous: true}, preset: canal.User{ID: "9"}, wantUser: canal.User{ID: "9"}},
		{name: "anonymous: bad token still refused", opts: middleware.TokenOptions{Anonymous: true}, query: "token=" + badToken, status: 403, reason: "invalid token", is: auth.ErrInvalid},
		{name: "earlier user, no token", preset: canal.User{ID: "9"}, wantUser: canal.User{ID: "9"}},
		{name: "no token waits for the first message", query: "room=1", wantOpen: true},
		{name: "no token, first message off", opts: middleware.TokenOptions{Transports: middleware.TransportQuery}, query: "token=", status: 403, reason: "missing token"},
		{name: "subprotocol off: bearer ignored", opts: middleware.TokenOptions{Transports: middleware.TransportQuery}, protos: sub("canal.token." + goodToken), status: 403, reason: "missing token"},
		{name: "invalid", query: "token=" + badToken, status: 403, reason: "invalid token", is: auth.ErrInvalid},
		{name: "invalid, error quotes token", query: "token=" + leakyToken, status: 403, reason: "invalid token", is: auth.ErrInvalid},
		{name: "invalid by subprotocol", protos: sub("canal.token." + leakyToken), status: 403, reason: "invalid token", is: auth.ErrInvalid},
		{name: "undecodable query", query: "token=%zz" + goodToken, status: 403, reason: "malformed token", is: auth.ErrInvalid},
		{name: "undecodable base64url", protos: sub("canal.token-b64.@@@"), status: 403, reason: "malformed token", is: auth.ErrInvalid},
		{name: "anonymous user without error", query: "token=" + anonToken, status: 403, reason: "invalid token", is: auth.ErrInvalid},
		{name: "unavailable", query: "token=" + downToken, status: 503, reason: "token verifier unavailable", is: canal.ErrUnavailable},
		{name: "other error", query: "token=" + brokeToken, status: 503, reason: "token verifier failed"},
		{name: "timeout", opts: middleware.TokenOptions{Timeout: 10 * time.Millisecond}, query: "token=" + slowToken, status: 503, reason: "token verifier failed", is: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := middleware.Token(testLookup, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			next := &okHandler{}
			c := newConn(&canal.Scope{Path: "/ws/", RawQuery: tt.query, Subprotocols: tt.protos, User: tt.preset})
			sess, err := mw(next).Connect(context.Background(), c)
			switch {
			case tt.wantOpen:
				if err != nil || sess == nil || !c.Accepted() || next.Calls() != 0 {
					t.Fatalf("want an open socket waiting for the token; got %v, %v, next calls %d", sess, err, next.Calls())
				}
				sess.Disconnect(context.Background(), c, canal.CloseAbnormal)
				return
			case tt.status == 0:
				if err != nil || sess == nil || next.Calls() != 1 {
					t.Fatalf("want next to run, got session %v, err %v", sess, err)
				}
				if next.user.ID != tt.wantUser.ID || next.user.Username != tt.wantUser.Username {
					t.Fatalf("user = %+v, want %+v", next.user, tt.wantUser)
				}
				for _, s := range allTokens {
					if tt.opts.Param != "" {
						break // the other parameters are the app's
					}
					if strings.Contains(c.scope.RawQuery, s) || strings.Contains(strings.Join(c.scope.Subprotocols, ","), s) {
						t.Fatalf("the scope still shows the token: %q %q", c.scope.RawQuery, c.scope.Subprotocols)
					}
				}
				return
			}
			var rej *canal.RejectError
			if !errors.As(err, &rej) || rej.Status != tt.status || rej.Reason != tt.reason {
				t.Fatalf("err = %v, want *canal.RejectError %d %q", err, tt.status, tt.reason)
			}
			if sess != nil || next.Calls() != 0 || c.scope.User.Authenticated() && !tt.preset.Authenticated() {
				t.Fatalf("refused, but session %v, next calls %d, user %+v", sess, next.Calls(), c.scope.User)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, does not wrap %v", err, tt.is)
			}
			for _, s := range append(allTokens, "%zz", "@@@") {
				if strings.Contains(err.Error(), s) || strings.Contains(rej.Reason, s) {
					t.Fatalf("refusal leaks token %q: %q", s, err)
				}
			}
		})
	}
}

// TestTokenFirstMessage: the first frame's forms and their answers.
func TestTokenFirstMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		frame  canal.Frame
		code   int // 0: next runs
		reason string
		user   string
	}{
		{name: "bare", frame: canal.Text(goodToken), user: "ada"},
		{name: "bare with newline", frame: canal.Text(goodToken + "\n"), user: "ada"},
		{name: "bare with ':'", frame: canal.Text(signToken), user: "signed"},
		{name: "JSON", frame: canal.Text(`{"token":"` + goodToken + `"}`), user: "ada"},
		{name: "JSON with type", frame: canal.Text(` {"type":"auth","token":"` + plusToken + `"}`), user: "plus"},
		{name: "bare invalid", frame: canal.Text(badToken), code: canal.CloseUnauthorized, reason: "invalid token"},
		{name: "JSON invalid, error quotes it", frame: canal.Text(`{"token":"` + leakyToken + `"}`), code: canal.CloseUnauthorized, reason: "invalid token"},
		{name: "anonymous answer", frame: canal.Text(anonToken), code: canal.CloseUnauthorized, reason: "invalid token"},
		{name: "verifier down", frame: canal.Text(downToken), code: canal.CloseInternalError, reason: "authentication unavailable"},
		{name: "bare with a space", frame: canal.Text("Token " + goodToken), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "binary", frame: canal.Frame{Binary: true, Data: []byte(goodToken)}, code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "empty", frame: canal.Text("  "), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "JSON without token", frame: canal.Text(`{"ticket":"` + goodToken + `"}`), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "JSON string", frame: canal.Text(`"` + goodToken + `"`), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "JSON array", frame: canal.Text(`["` + goodToken + `"]`), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "broken JSON", frame: canal.Text(`{"token":"` + goodToken), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "non-ASCII", frame: canal.Text("tökén"), code: canal.CloseUnauthorized, reason: "token expected"},
		{name: "oversized", frame: canal.Text(`{"token":"` + goodToken + `","pad":"` + strings.Repeat("x", 5000) + `"}`), code: canal.CloseUnauthorized, reason: "token expected"},
	}
	mw, err := middleware.Token(testLookup, middleware.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &okHandler{}
			c := newConn(nil)
			ctx := context.Background()
			sess, err := mw(next).Connect(ctx, c)
			if err != nil || !c.Accepted() {
				t.Fatalf("Connect = %v, accepted %v", err, c.Accepted())
			}
			defer sess.Disconnect(ctx, c, canal.CloseNormal)
			err = sess.Receive(ctx, c, tt.frame)
			if tt.code == 0 {
				if err != nil || next.Calls() != 1 || next.user.Username != tt.user {
					t.Fatalf("Receive = %v, next calls %d, user %+v", err, next.Calls(), next.user)
				}
				return
			}
			var ce *canal.CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code || ce.Reason != tt.reason || next.Calls() != 0 {
				t.Fatalf("Receive = %v, want close %d %q", err, tt.code, tt.reason)
			}
			for _, s := range allTokens {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q leaks %q", err, s)
				}
			}
		})
	}
}

func TestTokenOptionsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    auth.Verifier
		opts middleware.TokenOptions
	}{
		{"nil verifier", nil, middleware.TokenOptions{}},
		{"negative AuthTimeout", testLookup, middleware.TokenOptions{AuthTimeout: -time.Second}},
		{"negative Timeout", testLookup, middleware.TokenOptions{Timeout: -time.Second}},
		{"unknown transport", testLookup, middleware.TokenOptions{Transports: 1 << 6}},
		{"anonymous with first message", testLookup, middleware.TokenOptions{Anonymous: true, Transports: middleware.TransportFirstMessage}},
		{"marker with ':'", testLookup, middleware.TokenOptions{Subprotocol: "canal:token"}},
		{"param with &", testLookup, middleware.TokenOptions{Param: "a&b"}},
	}
	for _, tt := range tests {
		mw, err := middleware.Token(tt.v, tt.opts)
		if err == nil || mw != nil || !strings.HasPrefix(err.Error(), "middleware: Token: ") {
			t.Errorf("%s: got %v, %v; want an error", tt.name, mw, err)
		}
	}
	if _, err := middleware.Token(testLookup, middleware.TokenOptions{Anonymous: true}); err != nil {
		t.Errorf("Anonymous with the default transports: %v", err)
	}
}

// The verifier gets the handshake's context, so a client that goes away stops it.
func TestTokenPassesContext(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	var got any
	mw, err := middleware.Token(func(ctx context.Context, token string) (canal.User, error) {
		got = ctx.Value(ctxKey{})
		return canal.User{ID: "1"}, nil
	}, middleware.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(context.Background(), ctxKey{}, "handshake")
	if _, err := mw(&okHandler{}).Connect(ctx, newConn(&canal.Scope{RawQuery: "token=x"})); err != nil {
		t.Fatal(err)
	}
	if got != "handshake" {
		t.Fatalf("verifier context value = %v", got)
	}
}

// --- over real sockets ---

// member is a consumer that refuses users who are not "ada" and records the code its
// Disconnect got.
type member struct{ c *memberCodes }

type memberCodes struct {
	mu    sync.Mutex
	codes []string // "username code"
}

func (m *member) Connect(_ context.Context, c *consumer.Conn) error {
	if c.Scope().User.Username != "ada" {
		return canal.Reject(http.StatusForbidden, "not a member")
	}
	if err := c.Accept(); err != nil {
		return err
	}
	return c.Send(canal.Text("hello " + c.Scope().User.Username))
}

func (m *member) Disconnect(_ context.Context, c *consumer.Conn, code int) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.c.codes = append(m.c.codes, fmt.Sprintf("%s %d", c.Scope().User.Username, code))
}

func (m *memberCodes) get() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.codes...)
}

// TestTokenOverSockets: every transport on a real server, the answers a client sees
// (status and X-Canal-Reason, or close code and reason), and no token in the logs.
func TestTokenOverSockets(t *testing.T) {
	t.Parallel()
	logs := &canaltest.LogBuffer{}
	codes := &memberCodes{}
	app, err := consumer.New(func() *member { return &member{c: codes} }, consumer.Options[*member]{})
	if err != nil {
		t.Fatal(err)
	}
	token, err := middleware.Token(testLookup, middleware.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before NewServer, so it runs after the server's shutdown and sees
	// every line, the disconnects' included.
	t.Cleanup(func() {
		out := logs.String()
		for _, s := range allTokens {
			if strings.Contains(out, s) {
				t.Errorf("the logs contain token %q:\n%s", s, out)
			}
		}
	})
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := canaltest.NewServer(t, middleware.Stack(middleware.Recover(nil), token)(app), server.Options{Logger: logger})

	type answer struct {
		greeting string
		status   int
		reason   string
		code     int
	}
	try := func(t *testing.T, query string, protos []string, first string) answer {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := canaltest.Dial(ctx, srv.URL("/ws/?"+query), canaltest.DialOptions{Subprotocols: protos})
		var he *canaltest.HandshakeError
		if errors.As(err, &he) {
			return answer{status: he.Status, reason: he.Reason}
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Abort()
		if first != "" {
			if err := c.SendText(first); err != nil {
				t.Fatal(err)
			}
		}
		f, err := c.Receive(ctx)
		var ce *canal.CloseError
		switch {
		case errors.As(err, &ce):
			return answer{code: ce.Code, reason: ce.Reason}
		case err != nil:
			t.Fatal(err)
		}
		return answer{greeting: string(f.Data)}
	}
	tests := []struct {
		name   string
		query  string
		protos []string
		first  string
		want   answer
	}{
		{name: "query", query: "token=" + goodToken, want: answer{greeting: "hello ada"}},
		{name: "subprotocol", protos: []string{"canal.token", "canal.token." + goodToken}, want: answer{greeting: "hello ada"}},
		{name: "first message, bare", protos: []string{"canal.token"}, first: goodToken, want: answer{greeting: "hello ada"}},
		{name: "first message, JSON", first: `{"token":"` + goodToken + `"}`, want: answer{greeting: "hello ada"}},
		{name: "query, invalid", query: "token=" + leakyToken, want: answer{status: 403, reason: "invalid token"}},
		{name: "subprotocol, verifier down", protos: []string{"canal.token", "canal.token." + downToken}, want: answer{status: 503, reason: "token verifier unavailable"}},
		{name: "first message, invalid", first: leakyToken, want: answer{code: canal.CloseUnauthorized, reason: "invalid token"}},
		{name: "first message, garbage", first: "hello there", want: answer{code: canal.CloseUnauthorized, reason: "token expected"}},
		// The consumer refuses a valid user: before the upgrade 403 with its reason;
		// after a first-message token a close with 4403 and the same reason.
		{name: "query, consumer refuses", query: "token=" + url.QueryEscape(plusToken), want: answer{status: 403, reason: "not a member"}},
		{name: "first message, consumer refuses", first: signToken, want: answer{code: canal.CloseForbidden, reason: "not a member"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := try(t, tt.query, tt.protos, tt.first); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// The consumer refused twice: before the upgrade its Disconnect got 1006, after a
	// first-message token 4403, the code the client saw.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := codes.get()
		if slices.Contains(got, "plus 1006") && slices.Contains(got, "signed 4403") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer Disconnect codes %v, want \"plus 1006\" and \"signed 4403\" among them", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
