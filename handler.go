package canal

import (
	"context"
	"net/http"
)

// Handler handles the handshake of a WebSocket connection, as an ASGI application does.
//
// Connect runs on the handshake goroutine. It inspects c.Scope(), may call c.Accept or
// c.Close, and returns the Session that receives the connection's frames and events.
// Returning an error refuses the handshake: a *RejectError gives its status and its
// Reason (sent to the client), any other error gives 500. If Connect accepted before
// failing, the socket is opened and closed at once, with the code and reason
// [CloseFor] gives the error (a *CloseError's code, 4000+status for a *RejectError's
// 4xx, 1013 for its 503, else 1011). Returning a Session without accepting leaves the
// handshake pending until the session accepts (from an event) or the server's accept
// timeout refuses it.
//
// Handlers are shared by all connections and must be safe for concurrent use.
type Handler interface {
	Connect(ctx context.Context, c Conn) (Session, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c Conn) (Session, error)

// Connect calls f.
func (f HandlerFunc) Connect(ctx context.Context, c Conn) (Session, error) { return f(ctx, c) }

// Middleware wraps a Handler, chi style. Stacks compose in the order written:
// Chain(a, b).Then(h) runs a, then b, then h.
type Middleware func(next Handler) Handler

// Chain is a middleware stack.
type Chain []Middleware

// Then wraps h in the chain. When h is a [Matcher] (a router, or a chain around one),
// so is the result, answering as h does: the server can then refuse a path with no
// route before any middleware runs, whatever the order of the chain. Connect through
// the result costs one more method call than the bare stack, and no allocation.
func (ch Chain) Then(h Handler) Handler {
	inner := h
	for i := len(ch) - 1; i >= 0; i-- {
		h = ch[i](h)
	}
	if m, ok := inner.(Matcher); ok && len(ch) > 0 {
		return &chained{next: h, m: m}
	}
	return h
}

// Matcher is an optional Handler capability: Matches reports whether the handler has
// something to run for the connection s describes. router.Router implements it (a
// route matches the path), and so does the handler Chain.Then builds around one.
//
// The server asks its root handler before running it: a root that is a Matcher and
// answers false gets HTTP 404 ("no route for path") before any middleware runs, so a
// handshake to a path nobody serves neither waits for a first-message credential nor
// consumes a single-use ticket. A root that is not a Matcher (a plain HandlerFunc, or
// middleware applied by hand as mw(router)) gets every handshake, as before.
//
// The contract: Matches is a pure function of s that neither blocks nor modifies s
// (it runs on every handshake, before origin checks and authentication, and s is the
// scope the handler will see), and it answers true for every connection the handler
// would not refuse for its path alone. A wrapper that cannot answer must not be a
// Matcher.
type Matcher interface {
	Matches(s *Scope) bool
}

// Matches reports whether h has something to run for s: h.Matches(s) when h is a
// [Matcher], true for any other handler.
func Matches(h Handler, s *Scope) bool {
	if m, ok := h.(Matcher); ok {
		return m.Matches(s)
	}
	return true
}

// chained is what Chain.Then returns around a Matcher: the stack, and the Matcher it
// ends in.
type chained struct {
	next Handler
	m    Matcher
}

func (c *chained) Connect(ctx context.Context, conn Conn) (Session, error) {
	return c.next.Connect(ctx, conn)
}

func (c *chained) Matches(s *Scope) bool { return c.m.Matches(s) }

// Session receives an accepted connection's traffic. The server calls its methods one at
// a time per connection, in arrival order: client frames and layer events are never
// handled concurrently for one connection, and a slow session delays only its own
// connection.
//
// An error returned from Receive or Event closes the connection: a *CloseError with its
// code, anything else with 1011. Disconnect runs exactly once, after the socket closed,
// with the close code (1006 when the client vanished or the handshake was refused).
type Session interface {
	Receive(ctx context.Context, c Conn, f Frame) error
	Event(ctx context.Context, c Conn, m Message) error
	Disconnect(ctx context.Context, c Conn, code int)
}

// Frame is one WebSocket data frame. Data may be shared between connections (a group
// broadcast encodes once): never modify it after Send.
type Frame struct {
	Binary bool
	Data   []byte
}

// Text returns a text frame.
func Text(s string) Frame { return Frame{Data: []byte(s)} }

// AcceptOptions complete a handshake. The zero value accepts with no subprotocol.
type AcceptOptions struct {
	// Subprotocol is echoed in Sec-WebSocket-Protocol; it must be one the client offered.
	Subprotocol string
	// Header adds response headers to the 101 answer.
	Header http.Header
}

// Conn is a WebSocket connection as handlers and sessions see it.
//
// Concurrency: all methods are safe for concurrent use. Send never blocks on the network:
// frames go to a bounded per-connection queue written by the server; when the queue is
// full the connection is closed with 1013 (the slow-consumer policy) and Send returns
// ErrClosed.
type Conn interface {
	// Scope describes the connection.
	Scope() *Scope
	// Accept completes the handshake (HTTP 101). Calling it again is a no-op.
	Accept(opts AcceptOptions) error
	// Accepted reports whether Accept has succeeded.
	Accepted() bool
	// Send queues a frame. Before Accept it returns ErrNotAccepted.
	Send(f Frame) error
	// Close closes the connection with code and reason after the queued frames.
	// Before Accept it refuses the handshake with HTTP 403. Codes an application may
	// not send are refused with ErrInvalidCloseCode.
	Close(code int, reason string) error
	// Deliver queues a layer message for Session.Event, keeping per-connection order.
	// It never blocks; it returns false when the connection is closed or its queue is full.
	Deliver(m Message) bool
	// Context is canceled when the connection ends.
	Context() context.Context
}

// FrameDeliverer is an optional Conn capability for the fan-out path: DeliverFrame(m, f)
// has the effect of Deliver(m) followed by a Session.Event that does nothing but Send(f).
// A Conn with nothing queued can then write f without waking the session at all, which
// is most of the cost of a group message to thousands of idle sockets. Order with the
// connection's other frames and events is kept. Like Deliver it never blocks and returns
// false when the connection is closed or its queue is full.
//
// consumer.Options.Frames uses it when the Conn has it, directly or under wrappers
// (see [Unwrapper] and [AsFrameDeliverer]).
type FrameDeliverer interface {
	DeliverFrame(m Message, f Frame) bool
}

// Unwrapper is implemented by a Conn that wraps another, as middleware does to change
// what Accept does (net/http's ResponseController convention). It lets capabilities of
// the server's Conn, such as [FrameDeliverer], be found through the wrapper.
//
// The rule for middleware authors: a wrapper may Unwrap only if its Send and Deliver
// do what the wrapped Conn's do, because a capability found below it (DeliverFrame)
// bypasses it. A wrapper that changes Send or Deliver must not Unwrap; it may
// implement FrameDeliverer itself.
type Unwrapper interface {
	Unwrap() Conn
}

// maxUnwrap bounds AsFrameDeliverer's walk, in case a wrapper unwraps to itself.
const maxUnwrap = 64

// AsFrameDeliverer returns the first FrameDeliverer among c and the Conns it wraps
// (following Unwrap).
func AsFrameDeliverer(c Conn) (FrameDeliverer, bool) {
	for range maxUnwrap {
		if fd, ok := c.(FrameDeliverer); ok {
			return fd, true
		}
		u, ok := c.(Unwrapper)
		if !ok {
			return nil, false
		}
		if c = u.Unwrap(); c == nil {
			return nil, false
		}
	}
	return nil, false
}
