package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
)

// routeEcho accepts and sends the route it matched and its captured values.
var routeEcho = canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
	if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return nil, err
	}
	s := c.Scope()
	_ = c.Send(canal.Text(fmt.Sprintf("%s %v", s.RoutePattern, map[string]any(s.Route))))
	p := newProbe()
	return p, nil
})

// TestRoutingOverSockets: the router decides handshakes on real sockets, 404 included.
func TestRoutingOverSockets(t *testing.T) {
	t.Parallel()
	routes, err := router.New(
		router.Path("ws/chat/<str:room>/", routeEcho),
		router.Path("ws/users/<int:id>/", routeEcho),
		router.Path("ws/nested/", router.Must(
			router.Path("<slug:kind>/<uuid:id>/", routeEcho),
		)),
		router.Path("ws/nested/<path:rest>", routeEcho), // fall-through target
		router.Regex(`ws/re/(?P<name>[a-z]+)/`, routeEcho),
	)
	if err != nil {
		t.Fatal(err)
	}
	s := canaltest.NewServer(t, routes, fastOptions())
	tests := []struct {
		path       string
		want       string
		wantStatus int
	}{
		{"/ws/chat/lobby/", "ws/chat/<str:room>/ map[room:lobby]", 0},
		{"/ws/chat/caf%C3%A9/", "ws/chat/<str:room>/ map[room:café]", 0},
		{"/ws/users/42/", "ws/users/<int:id>/ map[id:42]", 0},
		{"/ws/nested/job/6ba7b810-9dad-11d1-80b4-00c04fd430c8/", "ws/nested/<slug:kind>/<uuid:id>/ map[id:6ba7b810-9dad-11d1-80b4-00c04fd430c8 kind:job]", 0},
		{"/ws/nested/not/a/uuid", "ws/nested/<path:rest> map[rest:not/a/uuid]", 0},
		{"/ws/re/abc/", "ws/re/(?P<name>[a-z]+)/ map[name:abc]", 0},
		{"/ws/users/abc/", "", 404},
		{"/ws/chat/lobby", "", 404}, // no trailing-slash redirect
		{"/nowhere/", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			c, err := dial(t, s, tt.path+"?ticket=secret", canaltest.DialOptions{})
			if tt.wantStatus != 0 {
				var he *canaltest.HandshakeError
				if !errors.As(err, &he) || he.Status != tt.wantStatus {
					t.Fatalf("dial: %v, want HTTP %d", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, err := c.ReceiveText(ctxT(t)); err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestOriginMatrixOverSockets is the spec's verified OriginValidator matrix, end to end.
func TestOriginMatrixOverSockets(t *testing.T) {
	t.Parallel()
	origin, err := middleware.Origin("http://allowed.com", ".example.com", "https://secure.com:8443")
	if err != nil {
		t.Fatal(err)
	}
	p := newProbe()
	o := fastOptions()
	o.InsecureSkipOriginCheck = true // the middleware's matrix, not the server's default
	s := canaltest.NewServer(t, canal.Chain{origin}.Then(p), o)
	tests := []struct {
		origin string // "" sends no Origin header
		ok     bool
	}{
		{"", false},
		{"http://allowed.com", true},
		{"http://allowed.com:80", true},
		{"http://ALLOWED.com", true},
		{"https://allowed.com", false},
		{"http://allowed.com:8080", false},
		{"http://example.com", true},
		{"http://sub.example.com", true},
		{"https://a.b.example.com:444", true},
		{"http://evil-example.com", false},
		{"https://secure.com:8443", true},
		{"https://secure.com", false},
		{"null", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("origin %q", tt.origin), func(t *testing.T) {
			t.Parallel()
			_, err := dial(t, s, "/", canaltest.DialOptions{Origin: tt.origin})
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var he *canaltest.HandshakeError
			if !errors.As(err, &he) || he.Status != 403 {
				t.Fatalf("dial: %v, want 403 (never 426)", err)
			}
		})
	}
}
