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

// Server is a Canal server on a private loopback port, for tests. It is stopped (the
// Canal server first, then the Fiber app) when the test ends.
type Server struct {
	*server.Server
	App  *fiber.App
	Addr string // "127.0.0.1:port"
}

// NewServer mounts h at "/" on a new Fiber app listening on 127.0.0.1:0. Use
// s.App to add plain HTTP routes before connecting.
func NewServer(t testing.TB, h canal.Handler, opts server.Options) *Server {
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
		_ = app.Listener(srv.Listener(ln)) // as Server.Listen serves: MaxConnections, EMFILE handling
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

// URL returns the ws:// URL of path (with its query) on s.
func (s *Server) URL(path string) string { return "ws://" + s.Addr + path }

// HTTPURL returns the http:// URL of path on s.
func (s *Server) HTTPURL(path string) string { return "http://" + s.Addr + path }
