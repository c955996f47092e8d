package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/middleware"
)

// echo stands for the application: a router or a consumer.
var echo = canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
	return &nopSession{}, c.Accept(canal.AcceptOptions{})
})

// outcome describes what the server would answer for a Connect result.
func outcome(err error) string {
	var rej *canal.RejectError
	if errors.As(err, &rej) {
		return fmt.Sprintf("HTTP %d", rej.Status)
	}
	if err != nil {
		return err.Error()
	}
	return "HTTP 101"
}

func ExampleOrigin() {
	origins, err := middleware.Origin("https://app.example.com", ".example.org", "localhost:8000")
	if err != nil {
		panic(err)
	}
	h := origins(echo)
	for _, o := range []string{
		"https://app.example.com",
		"http://app.example.com", // wrong scheme
		"https://docs.example.org",
		"http://localhost:3000", // a scheme-less pattern ignores the port
		"null",
	} {
		_, err := h.Connect(context.Background(), originConn(o))
		fmt.Println(o, "→", outcome(err))
	}
	// Output:
	// https://app.example.com → HTTP 101
	// http://app.example.com → HTTP 403
	// https://docs.example.org → HTTP 101
	// http://localhost:3000 → HTTP 101
	// null → HTTP 403
}

func ExampleOrigin_invalidPattern() {
	_, err := middleware.Origin("https://example.com/app")
	fmt.Println(err)
	// Output:
	// middleware: origin pattern "https://example.com/app": only a scheme, a host and a port are allowed (no path, query, fragment or user info)
}

func ExampleAllowedHosts() {
	// Django: DEBUG = True, ALLOWED_HOSTS = []
	origins, err := middleware.AllowedHosts(nil, true)
	if err != nil {
		panic(err)
	}
	h := origins(echo)
	for _, o := range []string{"http://localhost:8000", "http://[::1]:5173", "https://example.com"} {
		_, err := h.Connect(context.Background(), originConn(o))
		fmt.Println(o, "→", outcome(err))
	}
	// Output:
	// http://localhost:8000 → HTTP 101
	// http://[::1]:5173 → HTTP 101
	// https://example.com → HTTP 403
}

func ExampleRecover() {
	report := func(ctx context.Context, s *canal.Scope, v any, stack []byte) {
		slog.ErrorContext(ctx, "handler panic", "route", s.RoutePattern, "panic", v)
	}
	h := middleware.Recover(report)(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		var rooms map[string]int
		rooms["lobby"]++ // a bug: nil map
		return nil, nil
	}))
	_, err := h.Connect(context.Background(), newConn(&canal.Scope{RoutePattern: "ws/chat/<str:room>/"}))
	fmt.Println(outcome(err))
	// Output:
	// HTTP 500
}

func ExampleStack() {
	origins, err := middleware.AllowedHosts([]string{".example.com"}, false)
	if err != nil {
		panic(err)
	}
	token, err := middleware.Token(func(ctx context.Context, token string) (canal.User, error) {
		return canal.User{}, fmt.Errorf("token store: %w", canal.ErrUnavailable)
	}, middleware.TokenOptions{})
	if err != nil {
		panic(err)
	}
	// Recover first, so it also covers the middleware after it.
	h := middleware.Stack(middleware.Recover(nil), origins, token)(echo)

	_, err = h.Connect(context.Background(), newConn(&canal.Scope{
		RawQuery: "token=abc",
		Headers:  map[string][]string{"Origin": {"https://www.example.com"}},
	}))
	fmt.Println(outcome(err), errors.Is(err, canal.ErrUnavailable))
	// Output:
	// HTTP 503 true
}

// Session authenticates with Django's session cookie. Here the verifier is a stand-in;
// in production it is auth.Django with Kind "session", which asks the Django site.
func ExampleSession() {
	verify := func(_ context.Context, key string) (canal.User, error) {
		if key == "k3y-of-a-live-session" {
			return canal.User{ID: "42", Username: "ada"}, nil
		}
		return canal.User{}, auth.ErrInvalid // expired, logged out, unknown
	}
	session, err := middleware.Session(verify, middleware.SessionOptions{Required: true})
	if err != nil {
		panic(err)
	}
	h := session(canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
		fmt.Println("hello", c.Scope().User.Username)
		return &nopSession{}, c.Accept(canal.AcceptOptions{})
	}))
	for _, cookie := range []string{"sessionid=k3y-of-a-live-session", "sessionid=stale", ""} {
		_, err := h.Connect(context.Background(), cookieConn(cookie))
		fmt.Println(outcome(err))
	}
	// Output:
	// hello ada
	// HTTP 101
	// HTTP 403
	// HTTP 403
}
