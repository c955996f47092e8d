package canaltest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/server"
)

// NewListenServer is NewServer served the way Server.Listen serves: through
// Server.Listener, so Options.MaxConnections and the accept loop's handling of
// exhausted file descriptors are in force. It is stopped when the test ends.
func NewListenServer(t testing.TB, h canal.Handler, opts server.Options) *Server {
	t.Helper()
	srv, err := server.New(h, opts)
	if err != nil {
		t.Fatalf("canaltest: %v", err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("canaltest: listen: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = app.Listener(srv.Listener(ln))
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("canaltest: server shutdown: %v", err)
		}
		_ = app.ShutdownWithContext(ctx)
		<-served
	})
	return &Server{Server: srv, App: app, Addr: ln.Addr().String()}
}
