package middleware_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/middleware"
)

// BenchmarkOriginStack measures the handshake cost of an origin check followed by
// query-token authentication against an in-memory map.
func BenchmarkOriginStack(b *testing.B) {
	users := map[string]canal.User{"tok-123": {ID: "42", Username: "ada"}}
	lookup := func(_ context.Context, token string) (canal.User, error) {
		u, ok := users[token]
		if !ok {
			return canal.User{}, auth.ErrInvalid
		}
		return u, nil
	}
	origin, err := middleware.Origin("https://app.example.com", ".example.org", "[::1]")
	if err != nil {
		b.Fatal(err)
	}
	token, err := middleware.Token(lookup, middleware.TokenOptions{Transports: middleware.TransportQuery})
	if err != nil {
		b.Fatal(err)
	}
	sess := &nopSession{}
	h := middleware.Stack(origin, token)(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		return sess, nil
	}))

	run := func(b *testing.B, originHdr, query string, wantErr bool) {
		c := newConn(&canal.Scope{
			Path:     "/ws/chat/lobby/",
			RawQuery: query,
			Headers:  http.Header{"Origin": {originHdr}},
		})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			c.scope.User, c.scope.RawQuery = canal.User{}, query // Token removes the token from the query
			_, err := h.Connect(ctx, c)
			if (err != nil) != wantErr {
				b.Fatalf("err = %v", err)
			}
		}
	}
	b.Run("allowed", func(b *testing.B) { run(b, "https://app.example.com", "room=lobby&token=tok-123", false) })
	b.Run("subdomain", func(b *testing.B) { run(b, "https://a.b.example.org:8443", "token=tok-123", false) })
	b.Run("ipv6", func(b *testing.B) { run(b, "http://[::1]:8000", "token=tok-123", false) })
	b.Run("bad-origin", func(b *testing.B) { run(b, "https://evil.com", "token=tok-123", true) })
	b.Run("bad-token", func(b *testing.B) { run(b, "https://app.example.com", "token=nope", true) })
}
