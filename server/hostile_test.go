package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

// echoHandler accepts every handshake and echoes frames. Unlike probe it never blocks,
// however many connections it serves; it offers each conn on conns while there is room.
type echoHandler struct{ conns chan canal.Conn }

func newEchoHandler() *echoHandler { return &echoHandler{conns: make(chan canal.Conn, 64)} }

func (h *echoHandler) Connect(_ context.Context, c canal.Conn) (canal.Session, error) {
	if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return nil, err
	}
	select {
	case h.conns <- c:
	default:
	}
	return echoSession{}, nil
}

type echoSession struct{}

func (echoSession) Receive(_ context.Context, c canal.Conn, f canal.Frame) error { return c.Send(f) }
func (echoSession) Event(context.Context, canal.Conn, canal.Message) error       { return nil }
func (echoSession) Disconnect(context.Context, canal.Conn, int)                  {}

// slowOptions: a 500 ms read timeout and a 1 s idle timeout through Mount's defaults.
func slowOptions() server.Options {
	o := fastOptions()
	o.HandshakeTimeout = 500 * time.Millisecond
	o.PingInterval = 500 * time.Millisecond
	o.PongTimeout = 500 * time.Millisecond
	o.HTTP = func(c *fiber.Ctx) error { return c.SendString("ok") }
	return o
}

// waitClosed reads from c until the server closes it, and fails if it is still open
// after bound. It returns how long that took and what the server sent.
func waitClosed(t *testing.T, c net.Conn, bound time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(bound))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v (read %q)", bound, got)
	}
	return time.Since(start), string(got)
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSlowClientsAreCut: with the README's fiber.New() (no timeouts), Mount's read and
// idle timeouts close connections that send nothing, half a handshake, or a byte at a
// time, and keep-alive connections that stay idle.
func TestSlowClientsAreCut(t *testing.T) {
	t.Parallel()
	s := canaltest.NewServer(t, newEchoHandler(), slowOptions())
	upgrade := "GET /ws/ HTTP/1.1\r\nHost: " + s.Addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	const bound = 3 * time.Second // read timeout 500 ms, plus slack for a loaded machine

	t.Run("silent TCP", func(t *testing.T) {
		t.Parallel()
		c := dialTCP(t, s.Addr)
		waitClosed(t, c, bound)
	})
	t.Run("half-sent upgrade", func(t *testing.T) {
		t.Parallel()
		c := dialTCP(t, s.Addr)
		if _, err := io.WriteString(c, upgrade[:len(upgrade)/2]); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c, bound)
	})
	t.Run("a byte every 100 ms", func(t *testing.T) {
		t.Parallel()
		c := dialTCP(t, s.Addr)
		stop := make(chan struct{})
		sent := make(chan int, 1)
		go func() {
			n := 0
			defer func() { sent <- n }()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for ; n < len(upgrade); n++ {
				if _, err := c.Write([]byte{upgrade[n]}); err != nil {
					return
				}
				select {
				case <-tick.C:
				case <-stop:
					return
				}
			}
		}()
		_, got := waitClosed(t, c, bound)
		close(stop)
		if n := <-sent; n >= len(upgrade) || strings.Contains(got, " 101 ") {
			t.Fatalf("sent %d of %d bytes and got %q: the slow upgrade went through", n, len(upgrade), got)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		t.Parallel()
		c := dialTCP(t, s.Addr)
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: "+s.Addr+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		took, got := waitClosed(t, c, bound)
		if !strings.HasPrefix(got, "HTTP/1.1 200 OK") || !strings.HasSuffix(got, "ok") {
			t.Fatalf("got %q, want the 200 answer, then the close", got)
		}
		if took < 800*time.Millisecond {
			t.Fatalf("closed after %v, before the 1 s idle timeout", took)
		}
	})
}

// TestMountTimeouts: Mount fills in timeouts only where the app has none.
func TestMountTimeouts(t *testing.T) {
	t.Parallel()
	srv, err := server.New(newEchoHandler(), server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cfg        fiber.Config
		read, idle time.Duration
	}{
		{"none: Canal's", fiber.Config{}, 10 * time.Second, 45 * time.Second},
		{"the app's read timeout", fiber.Config{ReadTimeout: 7 * time.Second}, 7 * time.Second, 0},
		{"the app's idle timeout", fiber.Config{IdleTimeout: time.Minute}, 10 * time.Second, time.Minute},
	}
	for _, tt := range tests {
		app := fiber.New(tt.cfg)
		srv.Mount(app, "/")
		if got := app.Server(); got.ReadTimeout != tt.read || got.IdleTimeout != tt.idle {
			t.Errorf("%s: ReadTimeout %v, IdleTimeout %v; want %v, %v", tt.name, got.ReadTimeout, got.IdleTimeout, tt.read, tt.idle)
		}
	}
}

// TestLongLivedOutlastsReadTimeout: the HTTP read timeout bounds the handshake only; a
// socket and an event stream, served through Listener, live well past it.
func TestLongLivedOutlastsReadTimeout(t *testing.T) {
	t.Parallel()
	h := newEchoHandler()
	o := fastOptions()
	o.HandshakeTimeout = 200 * time.Millisecond // the app's ReadTimeout
	o.PingInterval = time.Second
	o.PongTimeout = time.Second
	o.EventStreams = true
	s := canaltest.NewServer(t, h, o)

	ws := mustDial(t, s, "/ws/", canaltest.DialOptions{})
	es := dialEvents(t, s, "/events/", canaltest.DialOptions{})
	var stream canal.Conn
	for range 2 {
		select {
		case c := <-h.conns:
			if c.Scope().Type == server.ScopeTypeSSE {
				stream = c
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler did not see both connections")
		}
	}
	time.Sleep(1500 * time.Millisecond) // 7 read timeouts
	if err := ws.SendText("still here"); err != nil {
		t.Fatal(err)
	}
	if got, err := ws.ReceiveText(ctxT(t)); err != nil || got != "still here" {
		t.Fatalf("socket: %q, %v", got, err)
	}
	if err := stream.Send(canal.Text("late news")); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, es); ev.Data != "late news" {
		t.Fatalf("stream: %+v", ev)
	}
}
