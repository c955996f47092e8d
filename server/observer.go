package server

import (
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
)

// Observer is told how handshakes end and when connections close, for metrics
// (package metrics adapts it to Prometheus). Set it in Options.Observer; nil costs
// nothing.
//
// What happens per frame is not reported here: the server counts it in atomic counters
// that Stats reads (frames received and sent, slow consumers, refused events), so a
// collector reads Stats when it is scraped and the hot path makes no call.
//
// Concurrency: methods are called from many goroutines at once (fasthttp's request
// goroutines, sockets' read loops) and must not block: they run on the handshake's or
// the socket's own goroutine, so a slow Observer delays that client. They must not
// call back into the Server.
type Observer interface {
	// Handshake reports the outcome of one WebSocket or event-stream request, once per
	// request that reached the Server: a refusal before its answer is written, an
	// accepted handshake right after its 101 or 200. An Accepted handshake is an open
	// connection, whose end Closed reports later.
	Handshake(HandshakeInfo)
	// Closed reports the end of a connection whose handshake was Accepted, once, after
	// its Session's Disconnect returned, and before a Shutdown that waits for it
	// returns.
	Closed(CloseInfo)
}

// Outcome is how a handshake ended.
type Outcome uint8

const (
	// Accepted: the handler accepted and the 101 (WebSocket) or 200 (event stream)
	// went out; the connection is open.
	Accepted Outcome = iota + 1
	// Rejected: the request was answered with an HTTP status instead: the handler
	// refused it (canal.Reject, Close before Accept, no Accept within
	// HandshakeTimeout: 403), no route matched (404), the request was malformed (400),
	// another site's page sent it (403, Options.Origins), or the server was shutting
	// down (503).
	Rejected
	// Failed: the handler returned an error that is not a RejectError or panicked
	// (500), or the accepted connection could not be opened (writing the 101 or 200
	// failed; Status is the one that did not go out).
	Failed
)

// String returns "accepted", "rejected" or "failed", the label metrics use.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Rejected:
		return "rejected"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// HandshakeInfo describes one handshake's outcome. It holds no path, query string or
// header: Route is the low-cardinality name to label it with.
type HandshakeInfo struct {
	// Route is the matched route patterns (canal.Scope.RoutePattern, e.g.
	// "ws/chat/<str:room>/"); "" when the request was refused before routing (400,
	// origin, shutdown) or matched no route.
	Route string
	// Transport is the connection's canal.Scope.Type: "websocket" or "sse".
	Transport string
	Outcome   Outcome
	// Status is the HTTP status of the answer: 101 or 200 when Accepted, the
	// refusal's status otherwise.
	Status int
	// Duration is the time from the request reaching the Server (for an opened
	// connection: from its Connect call) to the answer.
	Duration time.Duration
}

// CloseInfo describes the end of an open connection.
type CloseInfo struct {
	Route, Transport string // as in HandshakeInfo
	// Code is the close code Session.Disconnect got: the code the server or the
	// client closed with, 1006 when the peer vanished, 1013 when it was dropped as a
	// slow consumer, 1001 at shutdown.
	Code int
	// Duration is how long the connection was open.
	Duration time.Duration
}

// epoch makes a connection's timestamps 8-byte monotonic durations (clock since
// epoch) rather than 24-byte time.Time values: conns are many.
var epoch = time.Now()

func clock() time.Duration { return time.Since(epoch) }

// observeRefusal reports a handshake answered with a status (no hijack), as a deferred
// call of handshake: c is the connection if one was made by then.
func (s *Server) observeRefusal(fctx *fasthttp.RequestCtx, t transport, start time.Time, c *conn) {
	if fctx.Hijacked() {
		return // opened, or failed while opening: the hijack reports it (observeOpen)
	}
	h := HandshakeInfo{Transport: t.scopeType(), Outcome: Rejected,
		Status: fctx.Response.StatusCode(), Duration: time.Since(start)}
	if c != nil {
		h.Route = c.scope.RoutePattern // Connect returned on this goroutine
	}
	if h.Status == http.StatusInternalServerError {
		h.Outcome = Failed
	}
	s.opts.Observer.Handshake(h)
}

// observeOpen reports an accepted handshake whose answer went out (err nil) or could
// not be written, from the hijack goroutine, and starts the connection's clock.
func (c *conn) observeOpen(err error) {
	o := c.srv.opts.Observer
	if o == nil {
		return
	}
	now := clock()
	h := HandshakeInfo{Route: c.scope.RoutePattern, Transport: c.scope.Type, Outcome: Accepted,
		Status: http.StatusSwitchingProtocols, Duration: now - c.born}
	if c.scope.Type == ScopeTypeSSE {
		h.Status = http.StatusOK
	}
	if err != nil {
		h.Outcome = Failed
	}
	c.born = now
	o.Handshake(h)
}

// observeClosed reports the end of an opened connection with the code its
// Disconnect got.
func (c *conn) observeClosed(code int) {
	if o := c.srv.opts.Observer; o != nil {
		o.Closed(CloseInfo{Route: c.scope.RoutePattern, Transport: c.scope.Type, Code: code, Duration: clock() - c.born})
	}
}
