package server_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

// probe is a handler whose behaviour each test sets, recording what the server did.
type probe struct {
	connect    func(ctx context.Context, c canal.Conn) error
	receive    func(ctx context.Context, c canal.Conn, f canal.Frame) error
	event      func(ctx context.Context, c canal.Conn, m canal.Message) error
	disconnect chan int
	conns      chan canal.Conn
}

func newProbe() *probe {
	return &probe{disconnect: make(chan int, 16), conns: make(chan canal.Conn, 16)}
}

func (p *probe) Connect(ctx context.Context, c canal.Conn) (canal.Session, error) {
	p.conns <- c
	if p.connect != nil {
		if err := p.connect(ctx, c); err != nil {
			return nil, err
		}
	} else if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *probe) Receive(ctx context.Context, c canal.Conn, f canal.Frame) error {
	if p.receive != nil {
		return p.receive(ctx, c, f)
	}
	return c.Send(f)
}

func (p *probe) Event(ctx context.Context, c canal.Conn, m canal.Message) error {
	if p.event != nil {
		return p.event(ctx, c, m)
	}
	return nil
}

func (p *probe) Disconnect(_ context.Context, _ canal.Conn, code int) { p.disconnect <- code }

// waitDisconnect returns the code Disconnect got, failing after a bound.
func (p *probe) waitDisconnect(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.disconnect:
		return code
	case <-time.After(5 * time.Second):
		t.Fatal("Disconnect was not called")
		return 0
	}
}

func (p *probe) lastConn(t *testing.T) canal.Conn {
	t.Helper()
	select {
	case c := <-p.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection reached the handler")
		return nil
	}
}

// fastOptions keeps timeouts short so failure paths finish quickly.
func fastOptions() server.Options {
	return server.Options{
		HandshakeTimeout: 300 * time.Millisecond,
		PingInterval:     time.Second,
		PongTimeout:      time.Second,
		CloseTimeout:     500 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, s *canaltest.Server, path string, opts canaltest.DialOptions) (*canaltest.Communicator, error) {
	t.Helper()
	c, err := canaltest.Dial(ctxT(t), s.URL(path), opts)
	if err == nil {
		t.Cleanup(c.Abort)
	}
	return c, err
}

func mustDial(t *testing.T, s *canaltest.Server, path string, opts canaltest.DialOptions) *canaltest.Communicator {
	t.Helper()
	c, err := dial(t, s, path, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	return c
}
