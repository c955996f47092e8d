package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

// redial dials path until it is accepted, for up to 5 s: a closed connection frees its
// slot once the server has seen it close.
func redial(t *testing.T, s *canaltest.Server, path string) *canaltest.Communicator {
	t.Helper()
	var err error
	for range 50 {
		var c *canaltest.Communicator
		if c, err = dial(t, s, path, canaltest.DialOptions{}); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no slot came free: %v", err)
	return nil
}

// TestMaxConnections: past the limit a connection gets a complete 503 with Connection:
// close; an upgraded socket holds its slot until Canal closes it, then gives it back.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	var logs canaltest.LogBuffer
	o := fastOptions()
	o.MaxConnections = 2
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := canaltest.NewServer(t, newEchoHandler(), o)

	a := mustDial(t, s, "/", canaltest.DialOptions{})
	b := mustDial(t, s, "/", canaltest.DialOptions{})
	_, err := dial(t, s, "/", canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("third socket: %v, want HTTP 503", err)
	}
	raw := dialTCP(t, s.Addr)
	if _, err := io.WriteString(raw, "GET / HTTP/1.1\r\nHost: "+s.Addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_, got := waitClosed(t, raw, 3*time.Second)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Fatalf("plain request past the limit: %q (%v), want 503 with Connection: close", got, err)
	}
	if lines := logs.Lines("connection limit reached"); len(lines) != 1 || !strings.Contains(lines[0], "max_connections=2") {
		t.Fatalf("want one rate-limited line naming the limit:\n%s", logs.String())
	}

	// The server closes a's socket itself (the client's close handshake), through
	// the net.Conn fasthttp hijacked: the slot comes back.
	if err := a.Close(1000); err != nil {
		t.Fatal(err)
	}
	c := redial(t, s, "/")
	if _, err := dial(t, s, "/", canaltest.DialOptions{}); !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("with b and c open: %v, want HTTP 503", err)
	}
	// Dropped without a close handshake, and closed by shutdown of the read loop.
	b.Abort()
	c.Abort()
	redial(t, s, "/")
	redial(t, s, "/")
}

// TestMaxConnectionsValidated: a negative limit is an error; zero is the default.
func TestMaxConnectionsValidated(t *testing.T) {
	t.Parallel()
	if _, err := server.New(newEchoHandler(), server.Options{MaxConnections: -1}); !errors.Is(err, server.ErrOptions) {
		t.Fatalf("MaxConnections -1: %v, want ErrOptions", err)
	}
}

// TestListenRefusesPrefork: Listen's listener would not reach Fiber's prefork children.
func TestListenRefusesPrefork(t *testing.T) {
	t.Parallel()
	srv, err := server.New(newEchoHandler(), server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true, Prefork: true})
	if err := srv.Listen(app, "127.0.0.1:0"); !errors.Is(err, server.ErrPrefork) {
		t.Fatalf("Listen: %v, want ErrPrefork", err)
	}
}

// TestListen: Listen serves the app until it shuts down, and reports a bad address.
func TestListen(t *testing.T) {
	t.Parallel()
	srv, err := server.New(newEchoHandler(), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	if err := srv.Listen(app, "127.0.0.1:-1"); err == nil || !strings.Contains(err.Error(), "server: listen on") {
		t.Fatalf("Listen on a bad address: %v", err)
	}
	addrs := make(chan string, 1)
	app.Hooks().OnListen(func(d fiber.ListenData) error {
		addrs <- net.JoinHostPort(d.Host, d.Port)
		return nil
	})
	served := make(chan error, 1)
	go func() { served <- srv.Listen(app, "127.0.0.1:0") }()
	var addr string
	select {
	case addr = <-addrs:
	case err := <-served:
		t.Fatalf("Listen: %v", err)
	}
	c, err := canaltest.Dial(ctxT(t), "ws://"+addr+"/", canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendText("hi"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReceiveText(ctxT(t)); err != nil || got != "hi" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Abort()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.ShutdownWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Listen after shutdown: %v, want nil", err)
	}
}
