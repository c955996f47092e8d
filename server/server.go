package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/ratelog"
)

// Server runs a canal.Handler for the WebSocket requests of a Fiber app.
//
// Concurrency: a Server is safe for concurrent use. Its goroutines are bounded by
// construction: one per open socket (the read loop), at most SessionWorkers running
// session calls, GOMAXPROCS writing, and one per socket whose peer does not
// take what it is sent (until it does, or is dropped as a slow consumer).
type Server struct {
	root     canal.Handler
	opts     Options
	upgrader fws.Upgrader

	sessions *workers // session calls; may block
	writers  *workers // socket writes; never block
	budget   *budget  // bytes held for peers, all sockets (MaxBufferedBytes)
	stats    counters
	logs     ratelog.Limiter // repeated log lines

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
	idle     chan struct{} // closed when draining and no connection is left
}

// New returns a Server for root, usually a router. Options are validated here.
func New(root canal.Handler, opts Options) (*Server, error) {
	if root == nil {
		return nil, fmt.Errorf("%w: nil root handler", ErrOptions)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{root: root, opts: o, conns: make(map[*conn]struct{}),
		sessions: newWorkers(o.SessionWorkers),
		// One writer per P, never more: writes never block, so more goroutines would
		// only take CPU from the layer's receive loop (measured: with GOMAXPROCS=1, a
		// second writer made the stalled-client benchmark lose group messages, as the
		// channels_redis process queue overflowed while the layer waited for the CPU).
		writers: newWorkers(runtime.GOMAXPROCS(0)),
		budget:  &budget{max: o.MaxBufferedBytes},
	}
	s.upgrader = fws.Upgrader{
		// Zero: the library reuses the reader handed over by hijacker, sized by
		// Options.ReadBufferSize.
		ReadBufferSize:  0,
		WriteBufferSize: o.WriteBufferSize,
		// Write buffers are lent per message, so an idle socket holds none.
		WriteBufferPool: &writeBuffers{},
		// Origins are checked before the handler runs (origin.go, Options.Origins); the
		// upgrader's own check would answer 403 without telling the app why.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s, nil
}

// Mount serves WebSocket upgrades (and, with Options.EventStreams, event-stream
// requests) under prefix on app; other requests under prefix go to Options.HTTP or the
// app's next routes. This is Channels' ProtocolTypeRouter.
//
// Mount sets the app's fasthttp KeepHijackedConns, so that fasthttp recycles its
// request context and 4 KiB read buffer as soon as a socket is upgraded (Canal closes
// its sockets itself). Another hijacking handler on the same app must then close its
// own connections; gofiber/contrib/websocket does not, so do not mount both on one app.
// Call Mount before the app starts listening, and listen with Listen (or Listener),
// which keeps the process alive at its file limit.
//
// An app with no fiber.Config.ReadTimeout gets Canal's timeouts, so that clients that
// send their request slowly, partly or not at all (slowloris) cannot hold connections
// forever: ReadTimeout = Options.HandshakeTimeout for each request's headers and
// body (set your own for slow uploads on the same app), and, unless set,
// IdleTimeout = PingInterval + PongTimeout between keep-alive requests, as long as
// a silent socket lives. Upgraded sockets and streams are not bound by them: fasthttp
// clears the deadlines when it hands a socket over, and Canal keeps its own.
func (s *Server) Mount(app *fiber.App, prefix string) {
	app.Server().KeepHijackedConns = true
	s.setTimeouts(app.Server())
	app.Use(prefix, s.Handler())
}

// Handler returns the fiber.Handler that Mount installs.
func (s *Server) Handler() fiber.Handler {
	return func(c *fiber.Ctx) error {
		switch {
		case websocket.IsWebSocketUpgrade(c):
			s.handshake(c.Context(), c.App().Server().KeepHijackedConns, transportWebSocket)
		case s.opts.EventStreams && isEventStream(c.Context()):
			s.handshake(c.Context(), c.App().Server().KeepHijackedConns, transportSSE)
		case s.opts.HTTP != nil:
			return s.opts.HTTP(c)
		default:
			return c.Next()
		}
		return nil
	}
}

// Conns returns the number of open connections, handshaking ones included.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting handshakes (new ones get 503), closes every socket with
// 1001, lets each session's Disconnect run (groups are left), and waits for all of it
// or ctx. On ctx expiry the remaining sockets are dropped and ctx.Err() returned.
// Call it before the Fiber app's Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		s.idle = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.idle)
		}
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	idle := s.idle
	s.mu.Unlock()

	for _, c := range conns {
		c.closeWith(canal.CloseGoingAway, "server shutdown")
	}
	defer s.sessions.close()
	defer s.writers.close()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.abort()
		}
		return ctx.Err()
	}
}

func (s *Server) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.draining && len(s.conns) == 0 {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
}

// handshake runs on fasthttp's request goroutine: it decides the handshake and either
// answers an HTTP status or upgrades (or opens the event stream), handing the socket
// to a hijack goroutine.
func (s *Server) handshake(fctx *fasthttp.RequestCtx, keepHijacked bool, t transport) {
	var made *conn // the connection once made, for the Observer
	if s.opts.Observer != nil {
		start := time.Now()
		defer func() { s.observeRefusal(fctx, t, start, made) }()
	}
	if t == transportWebSocket && !validUpgrade(fctx) {
		refusal(fctx, http.StatusBadRequest, "invalid WebSocket upgrade request")
		return
	}
	if s.refuseOrigin(fctx) { // 403 for another site's page: see Options.Origins
		refusal(fctx, http.StatusForbidden, "origin not allowed")
		return
	}
	scope, status := newScope(fctx)
	if status != 0 {
		refusal(fctx, status, "invalid path encoding")
		return
	}
	scope.Type = t.scopeType()
	// The root answers first (canal.Matcher): a path no route serves gets 404 before
	// any middleware runs, so it neither waits for a first-message credential nor
	// consumes a ticket.
	if !canal.Matches(s.root, scope) {
		s.logs.Log(s.opts.Logger.With("path", scope.Path), slog.LevelInfo, "rejected 404", "canal: handshake rejected",
			"status", http.StatusNotFound, "reason", reasonNoRoute)
		refusal(fctx, http.StatusNotFound, reasonNoRoute)
		return
	}
	c := newConn(s, scope)
	made = c
	if !s.add(c) {
		refusal(fctx, http.StatusServiceUnavailable, "server shutting down")
		return
	}

	// Not derived from c.ctx: a child would leave a children map in c.ctx for the
	// socket's whole life. Shutdown refuses pending handshakes by itself.
	hctx, cancel := context.WithTimeout(context.Background(), s.opts.HandshakeTimeout)
	defer cancel()
	sess, err := c.connect(hctx)
	if err == nil && sess == nil {
		err = errors.New("server: handler returned neither a session nor an error")
	}
	if err != nil && !c.Accepted() {
		c.refuse(fctx, err)
		return
	}
	if err != nil {
		// Accepted, then failed: Channels' "exception after accept". Upgrade and close,
		// with the code consumer.Disconnect got (canal.CloseFor).
		code, reason := canal.CloseFor(err)
		if code == canal.CloseInternalError {
			c.srv.logs.Log(c.log(), slog.LevelError, "failed after accept", "canal: connect failed after accept", "err", err)
		}
		c.closeWith(code, reason)
		sess = nil
	}
	c.setSession(sess)

	reason := "refused before accept" // the session called Close before Accept
	select {
	case <-c.decided:
		// Decided within Connect, the usual case: no timer to make.
	default:
		timer := time.NewTimer(s.opts.HandshakeTimeout)
		select {
		case <-c.decided:
			timer.Stop()
		case <-timer.C:
			reason = "accept timeout"
			c.reject(http.StatusForbidden, reason)
		}
	}
	if status := c.rejectedStatus(); status != 0 {
		if status == http.StatusServiceUnavailable {
			reason = "server shutting down"
		}
		refusal(fctx, status, reason)
		c.finishRejected()
		return
	}

	opts := c.acceptOptions()
	header := make(http.Header, len(opts.Header)+1)
	for k, vs := range opts.Header {
		header[http.CanonicalHeaderKey(k)] = vs
	}
	raw := fctx.Conn()
	if t == transportSSE {
		fctx.HijackSetNoResponse(true) // openStream writes the 200 itself
		fctx.Hijack(func(net.Conn) {
			w := c.openStream(raw, header)
			if w == nil {
				return
			}
			if keepHijacked {
				go c.serveStream(w)
				return
			}
			c.serveStream(w)
		})
		return
	}
	if opts.Subprotocol != "" {
		header.Set("Sec-WebSocket-Protocol", opts.Subprotocol)
	}
	req := &http.Request{Method: http.MethodGet, Header: c.scope.Headers, Host: string(fctx.Host())}
	fctx.HijackSetNoResponse(true) // the library writes the 101 itself
	fctx.Hijack(func(net.Conn) {
		ws, w := c.upgrade(raw, req, header)
		if ws == nil {
			return
		}
		if keepHijacked {
			// Return at once: fasthttp then recycles its request context and read
			// buffer, and leaves the socket open. The read loop starts on a fresh
			// goroutine, whose stack stays as small as the loop needs.
			go c.serve(ws, w)
			return
		}
		// Without KeepHijackedConns fasthttp closes the socket when this returns.
		c.serve(ws, w)
	})
}

// refuse answers a handshake whose Connect returned an error.
func (c *conn) refuse(fctx *fasthttp.RequestCtx, err error) {
	status, reason := http.StatusInternalServerError, "internal error"
	var rej *canal.RejectError
	if errors.As(err, &rej) {
		status, reason = rej.Status, rej.Reason
		// Refusals are the clients' doing (no ticket, a used one): a line per
		// status a second, however many clients retry.
		c.srv.logs.Log(c.log(), slog.LevelInfo, "rejected "+strconv.Itoa(status), "canal: handshake rejected",
			"status", status, "reason", rej.Reason)
	} else {
		c.srv.logs.Log(c.log(), slog.LevelError, "failed", "canal: handshake failed", "err", err)
	}
	c.reject(status, reason)
	refusal(fctx, status, reason)
	c.finishRejected()
}

// reasonNoRoute is the reason of the 404 for a path the root handler does not match;
// router.Router's own 404 says the same.
const reasonNoRoute = "no route for path"

// maxReason bounds the reason sent with a refusal, as a close frame's reason is.
const maxReason = 123

// refusal answers a refused handshake with status, and with reason (public by
// canal.RejectError's contract) in the X-Canal-Reason header and as a text/plain body.
// Bytes outside printable ASCII become '?', so a reason can neither break the header
// nor carry markup a browser would render; it is cut to maxReason bytes. An empty
// reason sends the status text in the body and no header.
func refusal(fctx *fasthttp.RequestCtx, status int, reason string) {
	fctx.SetStatusCode(status)
	fctx.SetContentType("text/plain; charset=utf-8")
	if reason == "" {
		fctx.SetBodyString(http.StatusText(status) + "\n")
		return
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	b := []byte(reason)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	fctx.Response.Header.SetBytesV(canal.ReasonHeader, b)
	fctx.SetBody(append(b, '\n'))
}

func newScope(fctx *fasthttp.RequestCtx) (*canal.Scope, int) {
	rawPath := string(fctx.URI().PathOriginal())
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, http.StatusBadRequest
	}
	// Copy every header value into one string and every value slice into one array:
	// the scope lives as long as the socket, so a few large allocations beat many
	// small ones.
	n, size := 0, 0
	fctx.Request.Header.VisitAll(func(k, v []byte) { n, size = n+1, size+len(v) })
	var all strings.Builder
	all.Grow(size)
	fctx.Request.Header.VisitAll(func(_, v []byte) { all.Write(v) })
	values, vals := all.String(), make([]string, n)
	h := make(http.Header, n)
	var protocols []string
	i, off := 0, 0
	fctx.Request.Header.VisitAll(func(k, v []byte) {
		key := http.CanonicalHeaderKey(string(k))
		val := values[off : off+len(v)]
		off += len(v)
		if prev, ok := h[key]; ok {
			h[key] = append(prev, val) // rare: a repeated header gets its own slice
		} else {
			vals[i] = val
			h[key] = vals[i : i+1 : i+1]
		}
		i++
		if key == "Sec-Websocket-Protocol" {
			for _, p := range strings.Split(val, ",") {
				if p = strings.TrimSpace(p); p != "" {
					protocols = append(protocols, p)
				}
			}
		}
	})
	return &canal.Scope{
		Type:         "websocket",
		Path:         path,
		RawPath:      rawPath,
		RawQuery:     string(fctx.URI().QueryString()),
		Headers:      h,
		Subprotocols: protocols,
		Client:       fctx.RemoteAddr().String(),
		Server:       fctx.LocalAddr().String(),
	}, 0
}
