package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/canal-rt/canal"
)

// Server runs a canal.Handler for the WebSocket requests of a Fiber app.
//
// Concurrency: a Server is safe for concurrent use; it keeps a goroutine per open
// socket (the read loop) and starts short-lived ones to run sessions and writes.
type Server struct {
	root     canal.Handler
	opts     Options
	upgrader fws.FastHTTPUpgrader

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
	s := &Server{root: root, opts: o, conns: make(map[*conn]struct{})}
	s.upgrader = fws.FastHTTPUpgrader{
		ReadBufferSize:  o.ReadBufferSize,
		WriteBufferSize: o.WriteBufferSize,
		// Origins are checked by middleware before the upgrade; the upgrader's own
		// check would answer 403 without telling the app why.
		CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
	}
	return s, nil
}

// Mount serves WebSocket upgrades under prefix on app; other requests under prefix go
// to Options.HTTP or the app's next routes. This is Channels' ProtocolTypeRouter.
func (s *Server) Mount(app *fiber.App, prefix string) {
	app.Use(prefix, s.Handler())
}

// Handler returns the fiber.Handler that Mount installs.
func (s *Server) Handler() fiber.Handler {
	return func(c *fiber.Ctx) error {
		if !websocket.IsWebSocketUpgrade(c) {
			if s.opts.HTTP != nil {
				return s.opts.HTTP(c)
			}
			return c.Next()
		}
		s.handshake(c.Context())
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
// answers an HTTP status or upgrades, handing the socket to a hijack goroutine.
func (s *Server) handshake(fctx *fasthttp.RequestCtx) {
	scope, status := newScope(fctx)
	if status != 0 {
		fctx.SetStatusCode(status)
		return
	}
	c := newConn(s, scope)
	if !s.add(c) {
		fctx.SetStatusCode(http.StatusServiceUnavailable)
		return
	}

	hctx, cancel := context.WithTimeout(c.ctx, s.opts.HandshakeTimeout)
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
		// Accepted, then failed: Channels' "exception after accept". Upgrade and close.
		code := canal.CloseInternalError
		var ce *canal.CloseError
		if errors.As(err, &ce) {
			code = ce.Code
		} else {
			c.log().Error("canal: connect failed after accept", "err", err)
		}
		c.closeWith(code, "")
		sess = nil
	}
	c.setSession(sess)

	timer := time.NewTimer(s.opts.HandshakeTimeout)
	select {
	case <-c.decided:
		timer.Stop()
	case <-timer.C:
		c.reject(http.StatusForbidden, "accept timeout")
	}
	if status := c.rejectedStatus(); status != 0 {
		fctx.SetStatusCode(status)
		c.finishRejected()
		return
	}

	opts := c.acceptOptions()
	for k, vs := range opts.Header {
		for _, v := range vs {
			fctx.Response.Header.Add(k, v)
		}
	}
	if opts.Subprotocol != "" {
		fctx.Response.Header.Set("Sec-WebSocket-Protocol", opts.Subprotocol)
	}
	if err := s.upgrader.Upgrade(fctx, c.serve); err != nil {
		// The request was a valid upgrade when we started; only a malformed handshake
		// (no key, wrong version) ends here, with the upgrader's 400.
		c.log().Info("canal: upgrade failed", "err", err)
		c.reject(fctx.Response.StatusCode(), "upgrade failed")
		c.finishRejected()
	}
}

// refuse answers a handshake whose Connect returned an error.
func (c *conn) refuse(fctx *fasthttp.RequestCtx, err error) {
	status := http.StatusInternalServerError
	var rej *canal.RejectError
	if errors.As(err, &rej) {
		status = rej.Status
		c.log().Info("canal: handshake rejected", "status", status, "reason", rej.Reason)
	} else {
		c.log().Error("canal: handshake failed", "err", err)
	}
	c.reject(status, "connect error")
	fctx.SetStatusCode(status)
	c.finishRejected()
}

func newScope(fctx *fasthttp.RequestCtx) (*canal.Scope, int) {
	rawPath := string(fctx.URI().PathOriginal())
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, http.StatusBadRequest
	}
	h := make(http.Header)
	var protocols []string
	fctx.Request.Header.VisitAll(func(k, v []byte) {
		key := http.CanonicalHeaderKey(string(k))
		val := string(v)
		h[key] = append(h[key], val)
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
