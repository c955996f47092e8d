package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

func TestClientCloseCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		close func(c *canaltest.Communicator)
		want  int
	}{
		{"code 4000", func(c *canaltest.Communicator) { _ = c.Close(4000) }, 4000},
		{"code 1000", func(c *canaltest.Communicator) { _ = c.Close(1000) }, 1000},
		{"no status", func(c *canaltest.Communicator) { _ = c.Close(0) }, canal.CloseNoStatus},
		{"TCP abort", func(c *canaltest.Communicator) { c.Abort() }, canal.CloseAbnormal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			s := canaltest.NewServer(t, p, fastOptions())
			c := mustDial(t, s, "/", canaltest.DialOptions{})
			tt.close(c)
			if got := p.waitDisconnect(t); got != tt.want {
				t.Fatalf("Disconnect(%d), want %d", got, tt.want)
			}
		})
	}
}

// TestSessionFailures: bad input and failing handlers close one socket with a documented
// code; the server and the other sockets go on.
func TestSessionFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    func(*server.Options)
		receive func(ctx context.Context, c canal.Conn, f canal.Frame) error
		send    func(c *canaltest.Communicator) error
		want    int
	}{
		{name: "error in Receive", receive: func(context.Context, canal.Conn, canal.Frame) error { return errors.New("boom") },
			send: func(c *canaltest.Communicator) error { return c.SendText("x") }, want: canal.CloseInternalError},
		{name: "panic in Receive", receive: func(context.Context, canal.Conn, canal.Frame) error { panic("boom") },
			send: func(c *canaltest.Communicator) error { return c.SendText("x") }, want: canal.CloseInternalError},
		{name: "CloseError from Receive", receive: func(context.Context, canal.Conn, canal.Frame) error {
			return &canal.CloseError{Code: 4321, Reason: "r"}
		},
			send: func(c *canaltest.Communicator) error { return c.SendText("x") }, want: 4321},
		{name: "frame over the read limit", opts: func(o *server.Options) { o.ReadLimit = 1024 },
			send: func(c *canaltest.Communicator) error { return c.SendText(strings.Repeat("a", 2048)) }, want: canal.CloseMessageTooBig},
		{name: "invalid UTF-8 text", send: func(c *canaltest.Communicator) error { return c.SendRaw(fws.TextMessage, []byte{'a', 0xff, 0xfe}) },
			want: canal.CloseInvalidPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			p.receive = tt.receive
			o := fastOptions()
			if tt.opts != nil {
				tt.opts(&o)
			}
			s := canaltest.NewServer(t, p, o)
			bystander := mustDial(t, s, "/", canaltest.DialOptions{})
			c := mustDial(t, s, "/", canaltest.DialOptions{})
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			code, _, err := c.ExpectClose(ctxT(t))
			if err != nil || code != tt.want {
				t.Fatalf("close %d, %v; want %d", code, err, tt.want)
			}
			if got := p.waitDisconnect(t); got != tt.want {
				t.Fatalf("Disconnect(%d), want %d", got, tt.want)
			}
			// The other connection and new ones still work.
			p.receive = nil
			if err := bystander.SendText("still here"); err != nil {
				t.Fatal(err)
			}
			if got, err := bystander.ReceiveText(ctxT(t)); err != nil || got != "still here" {
				t.Fatalf("bystander got %q, %v", got, err)
			}
			mustDial(t, s, "/", canaltest.DialOptions{})
		})
	}
}

// TestSlowConsumer: a client that stops reading fills its queue and is closed with 1013;
// another client on the same server is not held up.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	p := newProbe()
	release := make(chan struct{})
	big := canal.Frame{Binary: true, Data: make([]byte, 256<<10)}
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
		if string(f.Data) != "flood" {
			return c.Send(f)
		}
		for i := 0; i < 400; i++ {
			if err := c.Send(big); err != nil {
				return nil // the slow-consumer policy closed the socket
			}
		}
		<-release
		return nil
	}
	o := fastOptions()
	o.SendQueue = 8
	o.WriteTimeout = 500 * time.Millisecond
	s := canaltest.NewServer(t, p, o)

	slow := mustDial(t, s, "/", canaltest.DialOptions{})
	fast := mustDial(t, s, "/", canaltest.DialOptions{})
	if err := slow.SendText("flood"); err != nil {
		t.Fatal(err)
	}
	// The slow client never reads; its Disconnect reports the policy's code.
	if got := p.waitDisconnect(t); got != canal.CloseTryAgainLater {
		t.Fatalf("slow client Disconnect(%d), want %d", got, canal.CloseTryAgainLater)
	}
	close(release)
	for i := 0; i < 3; i++ {
		msg := fmt.Sprint("ping ", i)
		if err := fast.SendText(msg); err != nil {
			t.Fatal(err)
		}
		if got, err := fast.ReceiveText(ctxT(t)); err != nil || got != msg {
			t.Fatalf("fast client got %q, %v", got, err)
		}
	}
}

// TestSlowSessionDoesNotBlockOthers: a handler stuck on one connection delays only that
// connection.
func TestSlowSessionDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	p := newProbe()
	stuck := make(chan struct{})
	entered := make(chan struct{}, 1)
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
		if string(f.Data) == "block" {
			entered <- struct{}{}
			<-stuck
		}
		return c.Send(f)
	}
	s := canaltest.NewServer(t, p, fastOptions())
	a := mustDial(t, s, "/", canaltest.DialOptions{})
	b := mustDial(t, s, "/", canaltest.DialOptions{})
	if err := a.SendText("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := b.SendText("free"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ReceiveText(ctxT(t)); err != nil || got != "free" {
		t.Fatalf("b got %q, %v while a is blocked", got, err)
	}
	close(stuck)
	if got, err := a.ReceiveText(ctxT(t)); err != nil || got != "block" {
		t.Fatalf("a got %q, %v", got, err)
	}
}

// TestPerConnectionOrdering: client frames and layer events reach the session one at a
// time, each stream in its arrival order.
func TestPerConnectionOrdering(t *testing.T) {
	t.Parallel()
	const n = 200
	p := newProbe()
	var inside atomic.Int32
	var overlap atomic.Bool
	got := make(chan string, 2*n)
	enter := func() func() {
		if inside.Add(1) > 1 {
			overlap.Store(true)
		}
		return func() { inside.Add(-1) }
	}
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
		defer enter()()
		got <- "f" + string(f.Data)
		return nil
	}
	p.event = func(_ context.Context, c canal.Conn, m canal.Message) error {
		defer enter()()
		got <- "e" + m.String("n")
		return nil
	}
	s := canaltest.NewServer(t, p, fastOptions())
	c := mustDial(t, s, "/", canaltest.DialOptions{})
	conn := p.lastConn(t)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			for !conn.Deliver(canal.Message{"type": "t", "n": fmt.Sprint(i)}) {
				time.Sleep(time.Millisecond) // queue full: let the session drain
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		if err := c.SendText(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	var nextF, nextE int
	for i := 0; i < 2*n; i++ {
		select {
		case s := <-got:
			want := fmt.Sprint(nextE)
			if s[0] == 'f' {
				want = fmt.Sprint(nextF)
				nextF++
			} else {
				nextE++
			}
			if s[1:] != want {
				t.Fatalf("got %s out of order, want %s", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d frames and %d events arrived", nextF, nextE)
		}
	}
	if overlap.Load() {
		t.Fatal("session methods ran concurrently for one connection")
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	p := newProbe()
	s := canaltest.NewServer(t, p, fastOptions())
	clients := make([]*canaltest.Communicator, 3)
	for i := range clients {
		clients[i] = mustDial(t, s, "/", canaltest.DialOptions{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range clients {
		code, _, err := c.ExpectClose(ctxT(t))
		if err != nil || code != canal.CloseGoingAway {
			t.Fatalf("close %d, %v; want 1001", code, err)
		}
	}
	for range clients {
		if got := p.waitDisconnect(t); got != canal.CloseGoingAway {
			t.Fatalf("Disconnect(%d), want 1001", got)
		}
	}
	if n := s.Conns(); n != 0 {
		t.Fatalf("%d connections left after Shutdown", n)
	}
	_, err := dial(t, s, "/", canaltest.DialOptions{})
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v, want 503", err)
	}
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.PingInterval = 100 * time.Millisecond
	o.PongTimeout = 200 * time.Millisecond

	t.Run("answering client stays", func(t *testing.T) {
		t.Parallel()
		p := newProbe()
		s := canaltest.NewServer(t, p, o)
		c := mustDial(t, s, "/", canaltest.DialOptions{})
		// Three keepalive windows of silence: pings flow, pongs come back.
		if err := c.ExpectNothing(900 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := c.SendText("alive"); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReceiveText(ctxT(t)); err != nil || got != "alive" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("dead peer is dropped", func(t *testing.T) {
		t.Parallel()
		p := newProbe()
		s := canaltest.NewServer(t, p, o)
		// A raw client that completes the handshake and then never reads or answers.
		nc, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", s.Addr)
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		status, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.Contains(status, "101") {
			t.Fatalf("handshake answer %q, %v", status, err)
		}
		if got := p.waitDisconnect(t); got != canal.CloseAbnormal {
			t.Fatalf("Disconnect(%d), want 1006", got)
		}
	})
}

// TestHandlerWithoutMount: an app that installs Handler itself (so fasthttp closes
// hijacked sockets) gets the same behaviour, with the read loop on fasthttp's goroutine.
func TestHandlerWithoutMount(t *testing.T) {
	t.Parallel()
	p := newProbe()
	srv, err := server.New(p, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use("/", srv.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = app.ShutdownWithContext(ctx)
		<-done
	}()
	c, err := canaltest.Dial(ctxT(t), "ws://"+ln.Addr().String()+"/", canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendText("echo"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReceiveText(ctxT(t)); err != nil || got != "echo" {
		t.Fatalf("got %q, %v", got, err)
	}
	_ = c.Close(4000)
	if got := p.waitDisconnect(t); got != 4000 {
		t.Fatalf("Disconnect(%d), want 4000", got)
	}
}

// TestMalformedHandshake: a request that cannot be upgraded gets 400 before any handler.
func TestMalformedHandshake(t *testing.T) {
	t.Parallel()
	p := newProbe()
	s := canaltest.NewServer(t, p, fastOptions())
	tests := []struct{ name, key, version string }{
		{"short key", "c2hvcnQ=", "13"},
		{"bad version", "dGhlIHNhbXBsZSBub25jZQ==", "8"},
		{"no key", "", "13"},
	}
	for _, tt := range tests {
		nc, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n\r\n", s.Addr, tt.key, tt.version)
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		status, err := bufio.NewReader(nc).ReadString('\n')
		nc.Close()
		if err != nil || !strings.Contains(status, " 400 ") {
			t.Errorf("%s: answer %q, %v; want 400", tt.name, status, err)
		}
	}
	select {
	case <-p.conns:
		t.Fatal("a malformed handshake reached the handler")
	default:
	}
}

// TestDeliverFrame: a ready frame skips the session when nothing is queued, waits behind
// a session call that is running, and falls under the slow-consumer policy like Send.
func TestDeliverFrame(t *testing.T) {
	t.Parallel()
	p := newProbe()
	var events atomic.Int32
	p.event = func(context.Context, canal.Conn, canal.Message) error { events.Add(1); return nil }
	entered, release := make(chan struct{}), make(chan struct{})
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
		if string(f.Data) == "hold" {
			_ = c.Send(canal.Text("before"))
			close(entered)
			<-release
			return c.Send(canal.Text("after"))
		}
		return c.Send(f)
	}
	o := fastOptions()
	o.SendQueue = 4
	s := canaltest.NewServer(t, p, o)
	msg := canal.Message{"type": "room.message"}

	c := mustDial(t, s, "/", canaltest.DialOptions{})
	fd := p.lastConn(t).(canal.FrameDeliverer)
	if !fd.DeliverFrame(msg, canal.Text("idle")) {
		t.Fatal("DeliverFrame refused on an idle connection")
	}
	if got, err := c.ReceiveText(ctxT(t)); err != nil || got != "idle" {
		t.Fatalf("got %q, %v", got, err)
	}
	if n := events.Load(); n != 0 {
		t.Fatalf("the session's Event ran %d times for ready frames", n)
	}

	// While a session call runs, the frame waits for it: order is kept.
	if err := c.SendText("hold"); err != nil {
		t.Fatal(err)
	}
	<-entered
	if !fd.DeliverFrame(msg, canal.Text("event")) {
		t.Fatal("DeliverFrame refused while the session is busy")
	}
	close(release)
	for _, want := range []string{"before", "after", "event"} {
		if got, err := c.ReceiveText(ctxT(t)); err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}

	// A client that stops reading: ready frames fill the send queue, then 1013.
	mustDial(t, s, "/", canaltest.DialOptions{})
	sfd := p.lastConn(t).(canal.FrameDeliverer)
	big := canal.Frame{Binary: true, Data: make([]byte, 256<<10)}
	for i := 0; i < 400; i++ {
		if !sfd.DeliverFrame(msg, big) {
			break
		}
	}
	if got := p.waitDisconnect(t); got != canal.CloseTryAgainLater {
		t.Fatalf("slow client Disconnect(%d), want %d", got, canal.CloseTryAgainLater)
	}
	if sfd.DeliverFrame(msg, canal.Text("late")) {
		t.Fatal("DeliverFrame accepted a frame after the close")
	}
}
