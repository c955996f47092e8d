package middleware_test

import (
	"context"
	"net/http"
	"sync"

	"github.com/canal-rt/canal"
)

// fakeConn is a canal.Conn with no socket: the narrow unit edge for handshake
// middleware. It records accepts, closes and frames.
type fakeConn struct {
	scope  *canal.Scope
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	accepted  bool
	closed    bool
	closeCode int
	sent      []canal.Frame
	delivered []canal.Message
}

func newConn(s *canal.Scope) *fakeConn {
	if s == nil {
		s = &canal.Scope{}
	}
	if s.Type == "" {
		s.Type = "websocket"
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeConn{scope: s, ctx: ctx, cancel: cancel}
}

// originConn returns a conn whose request carries the given Origin headers, in order.
func originConn(origins ...string) *fakeConn {
	h := http.Header{}
	for _, o := range origins {
		h.Add("Origin", o)
	}
	return newConn(&canal.Scope{Path: "/ws/", Headers: h})
}

func (c *fakeConn) Scope() *canal.Scope { return c.scope }

func (c *fakeConn) Accept(canal.AcceptOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return canal.ErrClosed
	}
	c.accepted = true
	return nil
}

func (c *fakeConn) Accepted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted
}

func (c *fakeConn) Send(f canal.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return canal.ErrClosed
	case !c.accepted:
		return canal.ErrNotAccepted
	}
	c.sent = append(c.sent, f)
	return nil
}

func (c *fakeConn) Close(code int, _ string) error {
	if !canal.ValidAppCloseCode(code) {
		return canal.ErrInvalidCloseCode
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.closeCode = true, code
		c.cancel()
	}
	return nil
}

func (c *fakeConn) Deliver(m canal.Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.delivered = append(c.delivered, m)
	return true
}

func (c *fakeConn) Context() context.Context { return c.ctx }

// nopSession does nothing; tests compare it by identity.
type nopSession struct{}

func (*nopSession) Receive(context.Context, canal.Conn, canal.Frame) error { return nil }
func (*nopSession) Event(context.Context, canal.Conn, canal.Message) error { return nil }
func (*nopSession) Disconnect(context.Context, canal.Conn, int)            {}

// okHandler accepts and returns a nopSession; calls counts how often it ran.
type okHandler struct {
	mu    sync.Mutex
	calls int
	user  canal.User // the scope's user when last called
}

func (h *okHandler) Connect(_ context.Context, c canal.Conn) (canal.Session, error) {
	h.mu.Lock()
	h.calls++
	h.user = c.Scope().User
	h.mu.Unlock()
	if err := c.Accept(canal.AcceptOptions{}); err != nil {
		return nil, err
	}
	return &nopSession{}, nil
}

func (h *okHandler) Calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}
