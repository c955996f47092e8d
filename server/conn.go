package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	fws "github.com/fasthttp/websocket"

	"github.com/canal-rt/canal"
)

type connState uint8

const (
	stateHandshake connState = iota
	stateAccepted
	stateRejected
	stateClosing // close requested; frames and events are dropped from now on
	stateClosed  // the socket is gone
)

type itemKind uint8

const (
	kindFrame itemKind = iota
	kindEvent
	kindSend // a layer event whose whole handling is sending frame
	kindDisconnect
)

type item struct {
	kind  itemKind
	code  int
	frame canal.Frame
	msg   canal.Message
}

// conn is the server side of one connection and implements canal.Conn.
//
// Goroutines: the handshake runs on fasthttp's request goroutine, the read loop on the
// hijack goroutine, and two tasks on the server's worker queue drain the inbox (session
// calls, one at a time) and the outbox (network writes), each queued only while there
// is work. An idle socket has only its read loop.
// All fields below mu are guarded by it.
type conn struct {
	srv    *Server
	scope  *canal.Scope
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // worker and writer goroutines

	decided chan struct{} // closed when the handshake is accepted or rejected

	mu        sync.Mutex
	space     sync.Cond // signalled when the inbox has room for a client frame
	state     connState
	accept    canal.AcceptOptions
	status    int // HTTP status when rejected
	session   canal.Session
	inbox     []item
	frames    int // client frames in inbox
	events    int // layer events in inbox
	working   bool
	outbox    []canal.Frame
	writing   bool
	closeCode int // code of the close frame to send, 0 when none is pending
	closeText string
	closeSent bool
	discCode  int  // code for Session.Disconnect
	wire      wire // nil until the socket is upgraded or the stream opened
	pinger    *time.Timer
	pingDue   bool // the writer owes the peer a ping

	// c.work and c.write as func values, made once: a method value passed to
	// workers.run would be allocated on every kick, that is for every message.
	workTask, writeTask func()
}

func newConn(s *Server, scope *canal.Scope) *conn {
	c := &conn{srv: s, scope: scope, decided: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.space.L = &c.mu
	c.workTask, c.writeTask = c.work, c.write
	return c
}

func (c *conn) log() *slog.Logger {
	// Path only: the query string may carry a ticket or token.
	return c.srv.opts.Logger.With("path", c.scope.Path, "route", c.scope.RoutePattern)
}

// connect runs the root handler, turning a panic into an error.
func (c *conn) connect(ctx context.Context) (sess canal.Session, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.log().Error("canal: panic in Connect", "panic", v, "stack", string(debug.Stack()))
			sess, err = nil, &canal.RejectError{Status: http.StatusInternalServerError, Reason: "panic"}
		}
	}()
	return c.srv.root.Connect(ctx, c)
}

func (c *conn) setSession(s canal.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.session = s
	c.kickWorker()
}

// --- canal.Conn ---

func (c *conn) Scope() *canal.Scope      { return c.scope }
func (c *conn) Context() context.Context { return c.ctx }

func (c *conn) Accepted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateAccepted || (c.state >= stateClosing && c.status == 0)
}

func (c *conn) Accept(opts canal.AcceptOptions) error {
	if opts.Subprotocol != "" && !slices.Contains(c.scope.Subprotocols, opts.Subprotocol) {
		return fmt.Errorf("%w: %q", canal.ErrSubprotocolNotOffered, opts.Subprotocol)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateHandshake:
		c.state = stateAccepted
		c.accept = opts
		close(c.decided)
		return nil
	case stateAccepted:
		return nil
	default:
		return canal.ErrClosed
	}
}

func (c *conn) Send(f canal.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(f)
}

func (c *conn) sendLocked(f canal.Frame) error {
	if f.Binary && c.scope.Type == ScopeTypeSSE {
		return ErrTextOnly
	}
	switch c.state {
	case stateHandshake:
		return canal.ErrNotAccepted
	case stateAccepted:
	default:
		return canal.ErrClosed
	}
	if len(c.outbox) >= c.srv.opts.SendQueue {
		c.outbox = nil
		c.closeLocked(canal.CloseTryAgainLater, "slow consumer")
		c.log().Warn("canal: slow consumer closed", "queue", c.srv.opts.SendQueue)
		return fmt.Errorf("%w: slow consumer", canal.ErrClosed)
	}
	c.outbox = append(c.outbox, f)
	c.kickWriter()
	return nil
}

func (c *conn) Close(code int, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateHandshake {
		c.rejectLocked(http.StatusForbidden)
		return nil
	}
	if !canal.ValidAppCloseCode(code) {
		return fmt.Errorf("%w: %d (allowed: 1000, 1001, 1003, 1007, 1008, 1011, 1013, 3000-4999)", canal.ErrInvalidCloseCode, code)
	}
	if len(reason) > 123 {
		return fmt.Errorf("%w: reason longer than 123 bytes", canal.ErrInvalidCloseCode)
	}
	c.closeLocked(code, reason)
	return nil
}

func (c *conn) Deliver(m canal.Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stateRejected || c.events >= c.srv.opts.EventQueue {
		return false
	}
	c.events++
	c.inbox = append(c.inbox, item{kind: kindEvent, msg: m})
	c.kickWorker()
	return true
}

// DeliverFrame implements canal.FrameDeliverer. With the inbox empty and no session call
// running, nothing can come before f, so it goes straight to the outbox: no session call,
// no worker hand-off. Otherwise it waits its turn in the inbox.
func (c *conn) DeliverFrame(m canal.Message, f canal.Frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stateRejected || c.events >= c.srv.opts.EventQueue {
		return false
	}
	if c.state == stateAccepted && c.session != nil && !c.working && len(c.inbox) == 0 {
		// The event was taken, so the answer is true whatever Send says. Its failures end
		// the connection as they would through Session.Event: a slow consumer is closed
		// inside sendLocked, anything else (a binary frame on an event stream) is a
		// session error.
		if err := c.sendLocked(f); err != nil && !errors.Is(err, canal.ErrClosed) {
			c.log().Error("canal: session error", "err", err)
			c.closeLocked(canal.CloseInternalError, "")
		}
		return true
	}
	c.events++
	c.inbox = append(c.inbox, item{kind: kindSend, msg: m, frame: f})
	c.kickWorker()
	return true
}

// --- state changes ---

func (c *conn) reject(status int, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejectLocked(status)
}

func (c *conn) rejectLocked(status int) {
	if c.state != stateHandshake {
		return
	}
	c.state = stateRejected
	c.status = status
	close(c.decided)
}

func (c *conn) rejectedStatus() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateRejected {
		return c.status
	}
	return 0
}

func (c *conn) acceptOptions() canal.AcceptOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accept
}

// closeWith closes from inside the framework, where any valid wire code is allowed.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateHandshake {
		c.rejectLocked(http.StatusServiceUnavailable)
		return
	}
	c.closeLocked(code, reason)
}

func (c *conn) closeLocked(code int, reason string) {
	if c.state != stateAccepted {
		return
	}
	c.state = stateClosing
	c.closeCode, c.closeText, c.discCode = code, reason, code
	c.space.Broadcast()
	c.kickWriter()
}

// abort drops the socket without a close handshake (write failure, shutdown deadline).
func (c *conn) abort() {
	c.mu.Lock()
	w := c.wire
	if c.state == stateHandshake {
		c.rejectLocked(http.StatusServiceUnavailable)
	}
	c.mu.Unlock()
	if w != nil {
		_ = w.netConn().Close()
	}
}

// finishRejected runs Disconnect(1006) for a session whose handshake was refused, then
// forgets the connection. It does not wait: the HTTP answer goes out at once.
func (c *conn) finishRejected() {
	c.mu.Lock()
	c.discCode = canal.CloseAbnormal
	c.queueDisconnectLocked()
	c.mu.Unlock()
	go func() {
		c.wg.Wait()
		c.cancel()
		c.srv.remove(c)
	}()
}

func (c *conn) queueDisconnectLocked() {
	c.inbox = slices.DeleteFunc(c.inbox, func(it item) bool { return true })
	c.frames, c.events = 0, 0
	if c.session != nil {
		c.inbox = append(c.inbox, item{kind: kindDisconnect, code: c.discCode})
		c.kickWorker()
	}
}

// --- inbox: session calls, one at a time ---

func (c *conn) kickWorker() {
	if c.working || c.session == nil || len(c.inbox) == 0 {
		return
	}
	c.working = true
	c.wg.Add(1)
	c.srv.workers.run(c.workTask)
}

func (c *conn) work() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if len(c.inbox) == 0 {
			c.working = false
			c.mu.Unlock()
			return
		}
		it := c.inbox[0]
		c.inbox[0] = item{}
		c.inbox = c.inbox[1:]
		switch it.kind {
		case kindFrame:
			c.frames--
			c.space.Signal()
		case kindEvent, kindSend:
			c.events--
		}
		// After a close request the session gets nothing but its Disconnect.
		skip := it.kind != kindDisconnect && c.state >= stateRejected
		sess := c.session
		c.mu.Unlock()
		if !skip {
			c.dispatch(sess, it)
		}
	}
}

func (c *conn) dispatch(sess canal.Session, it item) {
	var err error
	func() {
		defer func() {
			if v := recover(); v != nil {
				c.log().Error("canal: panic in session", "panic", v, "stack", string(debug.Stack()))
				err = &canal.CloseError{Code: canal.CloseInternalError}
			}
		}()
		switch it.kind {
		case kindFrame:
			err = sess.Receive(c.ctx, c, it.frame)
		case kindEvent:
			err = sess.Event(c.ctx, c, it.msg)
		case kindSend:
			err = c.Send(it.frame)
		case kindDisconnect:
			sess.Disconnect(context.WithoutCancel(c.ctx), c, it.code)
		}
	}()
	if err == nil {
		return
	}
	var ce *canal.CloseError
	if errors.As(err, &ce) {
		c.closeWith(ce.Code, ce.Reason)
		return
	}
	if errors.Is(err, canal.ErrClosed) {
		return
	}
	c.log().Error("canal: session error", "err", err)
	c.mu.Lock()
	if c.state == stateHandshake {
		c.rejectLocked(http.StatusInternalServerError)
	} else {
		c.closeLocked(canal.CloseInternalError, "")
	}
	c.mu.Unlock()
}

// --- outbox: network writes ---

func (c *conn) kickWriter() {
	if c.writing || c.wire == nil || (len(c.outbox) == 0 && !c.pingDue && (c.closeCode == 0 || c.closeSent)) {
		return
	}
	c.writing = true
	c.wg.Add(1)
	c.srv.workers.run(c.writeTask)
}

func (c *conn) write() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		w := c.wire
		if len(c.outbox) > 0 {
			batch := c.outbox
			c.outbox = nil
			c.mu.Unlock()
			if err := w.writeFrames(batch); err != nil {
				c.abort()
				c.mu.Lock()
				c.writing = false
				c.outbox = nil
				c.mu.Unlock()
				return
			}
			continue
		}
		if c.pingDue {
			c.pingDue = false
			if c.state == stateAccepted {
				c.mu.Unlock()
				// A failed ping needs no handling here: the read deadline drops the peer.
				_ = w.ping()
				continue
			}
		}
		if c.closeCode != 0 && !c.closeSent {
			c.closeSent = true
			code, text := c.closeCode, c.closeText
			c.mu.Unlock()
			w.writeClose(code, text)
			continue
		}
		c.writing = false
		c.mu.Unlock()
		return
	}
}

// wire is the protocol spoken on an open connection: WebSocket frames (wsWire) or a
// Server-Sent Events stream (sseWire). Its methods are called by one goroutine at a
// time, except ping, which the library or the stream serializes with writes.
type wire interface {
	// writeFrames writes frames in order, with one system call where they fit in the
	// batch buffer, bounded by the write timeout.
	writeFrames(frames []canal.Frame) error
	// writeClose tells the peer that the connection ends with code; best effort.
	writeClose(code int, reason string)
	// ping keeps an idle connection alive. Only the writer calls it.
	ping() error
	// netConn is the socket.
	netConn() net.Conn
}

type wsWire struct {
	ws    *fws.Conn
	batch *batchConn
	opts  *Options
}

func (w *wsWire) writeFrames(frames []canal.Frame) error {
	_ = w.ws.SetWriteDeadline(time.Now().Add(w.opts.WriteTimeout))
	return w.batch.inBatch(func() error { return writeMessages(w.ws, frames) })
}

func writeMessages(ws *fws.Conn, frames []canal.Frame) error {
	for _, f := range frames {
		if err := ws.WriteMessage(messageType(f), f.Data); err != nil {
			return err
		}
	}
	return nil
}

func (w *wsWire) writeClose(code int, reason string) {
	deadline := time.Now().Add(w.opts.WriteTimeout)
	_ = w.ws.WriteControl(fws.CloseMessage, fws.FormatCloseMessage(code, reason), deadline)
	// The read loop ends when the client answers, or at this deadline.
	_ = w.ws.SetReadDeadline(time.Now().Add(w.opts.CloseTimeout))
}

// wsPing is a server's ping frame with no payload: FIN and opcode 9, unmasked, length 0.
var wsPing = []byte{0x89, 0x00}

// ping writes the frame itself rather than through the library, which allocates for
// every message it writes. It is safe because only the writer goroutine writes data
// frames, and the library's own control frames (pongs, the close echo) reach the
// socket in single writes that batchConn serializes with this one.
func (w *wsWire) ping() error {
	_ = w.batch.SetWriteDeadline(time.Now().Add(w.opts.WriteTimeout))
	_, err := w.batch.Write(wsPing)
	return err
}

func (w *wsWire) netConn() net.Conn { return w.ws.NetConn() }

// --- the socket ---

// upgrade answers 101 on the socket fasthttp handed over. On failure it closes the
// socket, ends the connection and returns nil.
func (c *conn) upgrade(raw net.Conn, req *http.Request, header http.Header) (*fws.Conn, *batchConn) {
	bc := &batchConn{Conn: raw, slack: c.srv.opts.WriteTimeout / 2}
	// One write for the 101 and the frames Connect queued (a greeting, usually).
	_ = bc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	var ws *fws.Conn
	err := bc.inBatch(func() (err error) {
		ws, err = c.srv.upgrader.Upgrade(&hijacker{conn: bc, br: bufio.NewReaderSize(bc, c.srv.opts.ReadBufferSize)}, req, header)
		if err != nil {
			return err
		}
		_ = ws.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
		return writeMessages(ws, c.takeOutbox())
	})
	if err != nil {
		c.openFailed(raw, err)
		return nil, nil
	}
	_ = bc.SetWriteDeadline(time.Time{})
	return ws, bc
}

// takeOutbox returns the frames queued so far, for the first write.
func (c *conn) takeOutbox() []canal.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	early := c.outbox
	c.outbox = nil
	return early
}

// openFailed ends a connection whose 101 or 200 could not be written.
func (c *conn) openFailed(raw net.Conn, err error) {
	c.log().Info("canal: opening the connection failed", "type", c.scope.Type, "err", err)
	_ = raw.Close()
	c.teardown(canal.CloseAbnormal)
}

func messageType(f canal.Frame) int {
	if f.Binary {
		return fws.BinaryMessage
	}
	return fws.TextMessage
}

// serve runs an upgraded WebSocket until it ends.
func (c *conn) serve(ws *fws.Conn, bc *batchConn) {
	o := c.srv.opts
	ws.SetReadLimit(o.ReadLimit)
	alive := func() { _ = ws.SetReadDeadline(time.Now().Add(o.PingInterval + o.PongTimeout)) }
	alive()
	ws.SetPongHandler(func(string) error { alive(); return nil })
	c.run(&wsWire{ws: ws, batch: bc, opts: &c.srv.opts}, func() int { return c.readLoop(ws, alive) })
}

// run starts writing and pinging on w, then runs readLoop until the peer is gone,
// and returns once the socket is closed and the worker and writer are done.
func (c *conn) run(w wire, readLoop func() int) {
	c.mu.Lock()
	c.wire = w
	c.pinger = time.AfterFunc(c.srv.opts.PingInterval, c.ping)
	c.kickWriter()
	c.mu.Unlock()

	code := readLoop()
	c.mu.Lock()
	c.pinger.Stop()
	c.mu.Unlock()
	_ = w.netConn().Close() // unblocks a writer stuck on a dead peer
	c.teardown(code)
}

// teardown ends the connection once the socket is gone: Disconnect runs, the worker
// and writer finish, and the server forgets the connection.
func (c *conn) teardown(code int) {
	c.mu.Lock()
	if c.state == stateAccepted {
		c.discCode = code
	}
	if c.discCode == 0 {
		c.discCode = code
	}
	c.state = stateClosed
	c.outbox = nil
	c.space.Broadcast()
	c.queueDisconnectLocked()
	c.mu.Unlock()

	c.wg.Wait()
	c.cancel()
	c.srv.remove(c)
}

// readLoop reads client frames into the inbox until the socket ends, and returns the
// close code the client gave (1005 none, 1006 dropped, 1009 too big).
func (c *conn) readLoop(ws *fws.Conn, alive func()) int {
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			var ce *fws.CloseError
			switch {
			case errors.As(err, &ce):
				return ce.Code
			case errors.Is(err, fws.ErrReadLimit):
				// The library has sent the 1009 close frame itself.
				c.mu.Lock()
				if c.state == stateAccepted {
					c.closeSent = true
					c.closeLocked(canal.CloseMessageTooBig, "")
				}
				c.mu.Unlock()
				return canal.CloseMessageTooBig
			default:
				return canal.CloseAbnormal
			}
		}
		alive()
		f := canal.Frame{Binary: typ == fws.BinaryMessage, Data: data}
		if !f.Binary && !utf8.Valid(data) {
			c.closeWith(canal.CloseInvalidPayload, "invalid UTF-8")
			continue
		}
		c.mu.Lock()
		for c.frames >= c.srv.opts.FrameQueue && c.state == stateAccepted {
			c.space.Wait()
		}
		if c.state == stateAccepted {
			c.frames++
			c.inbox = append(c.inbox, item{kind: kindFrame, frame: f})
			c.kickWorker()
		}
		c.mu.Unlock()
	}
}

// ping runs on the keepalive timer. The writer sends the ping, in line with the
// frames, so that it can write it without allocating (the library's WriteControl
// allocates; at 19,000 sockets that garbage filled the GC's headroom: +30 MB of RSS in
// the first minutes of a soak).
func (c *conn) ping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateAccepted {
		return
	}
	c.pingDue = true
	c.kickWriter()
	c.pinger.Reset(c.srv.opts.PingInterval)
}
