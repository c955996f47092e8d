package server

import (
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

// conn is the server side of one connection and implements canal.Conn. Its code is
// split by concern: state and the canal.Conn methods here, the inbox and session calls
// in inbox.go, the outbox and its writer in writer.go, the socket's write side in
// sock.go, and one file per transport (websocket.go, sse.go; wire.go encodes).
//
// Goroutines: the handshake runs on fasthttp's request goroutine, the read loop on the
// hijack goroutine; a task on the session workers drains the inbox (session calls, one
// at a time) and a task on the write workers drains the outbox, each queued only while
// there is work; a peer that does not take what it is sent gets a flusher goroutine
// (sock) until it does or is dropped. An idle socket has only its read loop.
// All fields below mu are guarded by it.
type conn struct {
	srv    *Server
	scope  *canal.Scope
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // session task, writer task and flusher

	decided chan struct{} // closed when the handshake is accepted or rejected

	mu        sync.Mutex
	space     sync.Cond // signalled when the inbox has room for a client frame
	outSpace  sync.Cond // signalled when the writer empties the outbox, or on close
	state     connState
	accept    canal.AcceptOptions
	status    int // HTTP status when rejected
	session   canal.Session
	inbox     []item
	frames    int // client frames in inbox
	events    int // layer events in inbox
	working   bool
	outbox    []canal.Frame
	one       [1]canal.Frame // the outbox's array while it holds one frame: no allocation per delivery
	arr       *[]canal.Frame // the pooled array behind a larger outbox (writer.go), or nil
	writing   bool
	closeCode int // code of the close frame to send, 0 when none is pending
	closeText string
	closeSent bool
	discCode  int  // code for Session.Disconnect
	wire      wire // nil until the socket is upgraded or the stream opened
	pinger    *time.Timer
	pingDue   bool          // the writer owes the peer a ping
	stalled   bool          // the writer waits for the socket's flusher (the peer is behind)
	born      time.Duration // clock() at Connect, then at the open; with an Observer only

	// c.work and c.write as func values, made once: a method value passed to
	// workers.run would be allocated on every kick, that is for every message.
	workTask, writeTask func()
}

func newConn(s *Server, scope *canal.Scope) *conn {
	c := &conn{srv: s, scope: scope, decided: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.space.L = &c.mu
	c.outSpace.L = &c.mu
	c.workTask, c.writeTask = c.work, c.write
	if s.opts.Observer != nil {
		c.born = clock()
	}
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
			c.srv.logs.Log(c.log(), slog.LevelError, "panic", "canal: panic in Connect", "panic", v, "stack", string(debug.Stack()))
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

// Send queues f. When frames come faster than the writer takes them (SendQueue is
// full), it waits for the writer, which never waits for the network: a busy handler
// is slowed down, a slow peer is the socket's business (Options.SendBuffer).
func (c *conn) Send(f canal.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.outbox) >= c.srv.opts.SendQueue && c.state == stateAccepted && c.wire != nil && !c.stalled {
		c.outSpace.Wait()
	}
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
		// The writer waits for the peer (stalled), or the socket is not open yet and
		// Connect queued more than it could ever be sent at once.
		c.slowLocked("send queue full behind a client that does not read")
		return fmt.Errorf("%w: slow consumer", canal.ErrClosed)
	}
	switch {
	case c.outbox == nil:
		c.outbox = c.one[:0]
	case len(c.outbox) == cap(c.outbox):
		c.growOutbox()
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
	if !c.eventRoomLocked() {
		return false
	}
	c.events++
	c.inbox = append(c.inbox, item{kind: kindEvent, msg: m})
	c.kickWorker()
	return true
}

// eventRoomLocked reports whether one more layer event fits in the inbox. A full
// inbox is a slow hook (the layer counts the channel as full, as Channels does at
// capacity), unless the writer is also waiting for the peer: then the client is
// SendBuffer bytes, SendQueue frames and EventQueue events behind, a slow consumer.
func (c *conn) eventRoomLocked() bool {
	switch {
	case c.state >= stateRejected:
		return false
	case c.events < c.srv.opts.EventQueue:
		return true
	case c.stalled:
		c.slowLocked("event queue full behind a client that does not read")
	default:
		c.srv.stats.eventsRefused.Add(1)
	}
	return false
}

// DeliverFrame implements canal.FrameDeliverer. With the inbox empty, no session call
// running and room in the outbox, nothing can come before f, so it goes straight to
// the outbox: no session call, no worker hand-off. Otherwise it waits its turn in the
// inbox (it never waits here: this runs on the layer's goroutine).
func (c *conn) DeliverFrame(m canal.Message, f canal.Frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.eventRoomLocked() {
		return false
	}
	c.srv.stats.frames.Add(1)
	if c.state == stateAccepted && c.session != nil && !c.working && len(c.inbox) == 0 && len(c.outbox) < c.srv.opts.SendQueue {
		c.srv.stats.framesDirect.Add(1)
		// The event was taken, so the answer is true whatever Send says. Its failures end
		// the connection as they would through Session.Event: a slow consumer is closed
		// inside sendLocked, anything else (a binary frame on an event stream) is a
		// session error.
		if err := c.sendLocked(f); err != nil && !errors.Is(err, canal.ErrClosed) {
			c.srv.logs.Log(c.log(), slog.LevelError, "session error", "canal: session error", "err", err)
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
	c.outSpace.Broadcast()
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
		_ = w.sock().Conn.Close()
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

// --- opening and ending ---

// newSock wraps the socket fasthttp handed over.
func (c *conn) newSock(raw net.Conn) *sock {
	s := newSock(raw, &c.srv.opts, c.srv.budget, c.writeFailed)
	s.wg = &c.wg
	s.drained = c.flushed
	return s
}

// takeOutbox returns the frames queued so far, for the first write.
func (c *conn) takeOutbox() []canal.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A copy: the outbox may be the inline array, which the next Send reuses.
	early := append([]canal.Frame(nil), c.outbox...)
	c.srv.stats.sent.Add(uint64(len(early)))
	c.dropOutboxLocked()
	c.outSpace.Broadcast()
	return early
}

// openFailed ends a connection whose 101 or 200 could not be written.
func (c *conn) openFailed(raw net.Conn, err error) {
	c.srv.logs.Log(c.log(), slog.LevelInfo, "open failed", "canal: opening the connection failed", "type", c.scope.Type, "err", err)
	_ = raw.Close()
	c.teardown(canal.CloseAbnormal)
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
	_ = w.sock().Conn.Close() // ends a flusher blocked on a dead peer
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
	c.dropOutboxLocked()
	c.space.Broadcast()
	c.outSpace.Broadcast()
	c.queueDisconnectLocked()
	opened, disc := c.wire != nil, c.discCode
	c.mu.Unlock()

	c.wg.Wait()
	c.cancel()
	if opened {
		c.observeClosed(disc)
	}
	c.srv.remove(c)
}

// slowLocked drops a connection whose client does not read what it is sent: nothing
// more goes out (there is no room for a close frame), the socket is closed, and
// Disconnect gets 1013.
func (c *conn) slowLocked(why string) {
	if c.state != stateAccepted {
		return
	}
	c.dropOutboxLocked()
	c.state = stateClosing
	c.closeSent = true
	c.discCode = canal.CloseTryAgainLater
	c.space.Broadcast()
	c.outSpace.Broadcast()
	c.srv.stats.slowConsumers.Add(1)
	c.srv.logLimited("slow", "canal: slow consumer dropped", "path", c.scope.Path, "why", why)
	if c.wire != nil {
		// Closing ends the read loop, which tears the connection down.
		_ = c.wire.sock().Conn.Close()
	}
}

// flushed runs when the socket's flusher has written everything: the writer resumes.
func (c *conn) flushed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stalled = false
	c.kickWriter()
}
