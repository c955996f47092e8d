package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/canal-rt/canal/internal/ratelog"
)

// Hostile load: fasthttp treats a failed accept (EMFILE when the process is out of file
// descriptors) as the end of the server, so app.Listen returns and the program exits.
// Listen and Listener put a listener in front of the app that keeps the accept loop
// alive through such errors and keeps the number of open connections below the file
// limit (Options.MaxConnections), answering the excess with 503.

// ErrPrefork is returned by Listen for a Fiber app configured with Prefork, which
// Listen does not support: its child processes would each listen without the limit.
var ErrPrefork = errors.New("server: Listen does not support Fiber's Prefork")

// fdHeadroom is what the default MaxConnections leaves of the file limit for
// everything else the process opens: Redis connections, log files, refusals in flight.
const (
	fdHeadroom     = 512
	minDefaultConn = 64
)

// defaultMaxConnections derives MaxConnections from the process's file limit; see
// Options.MaxConnections.
func defaultMaxConnections() int {
	cur, ok := fileLimit()
	if !ok || cur > math.MaxInt32 {
		return math.MaxInt
	}
	return max(int(cur)-fdHeadroom, minDefaultConn)
}

// Listen listens on addr (the app's network, "tcp4" unless fiber.Config.Network says
// otherwise) and serves app through Listener: the process survives running out of
// file descriptors, and connections past Options.MaxConnections get 503. It also
// gives the app the timeouts Mount gives it. On Linux the listening socket carries
// TCP keepalive and TCP_DEFER_ACCEPT for every connection (a client is accepted once
// its request has arrived, or after a second of silence). It returns when the app
// shuts down, like app.Listen.
func (s *Server) Listen(app *fiber.App, addr string) error {
	cfg := app.Config()
	if cfg.Prefork {
		return ErrPrefork
	}
	network := cfg.Network
	if network == "" {
		network = fiber.NetworkTCP4
	}
	lc := listenConfig()
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	s.setTimeouts(app.Server())
	return app.Listener(s.Listener(ln))
}

// Listener wraps ln for app.Listener(srv.Listener(ln)), for those who make their own
// listener (TLS, systemd sockets, a port chosen by the kernel). Accept then:
//
//   - keeps going through temporary errors, EMFILE and ENFILE first, which fasthttp
//     would take as the end of the server: it retries with a backoff from 5 ms to 1 s
//     and logs once per episode. While descriptors are exhausted it closes a spare
//     descriptor it keeps for this, accepts the waiting connections with it and
//     answers them 503, so clients do not hang in the backlog.
//   - counts open connections (until their Close, hijacked sockets included), and
//     answers 503 with Connection: close to those past Options.MaxConnections.
//   - gives the sockets it accepts Options.SocketSendBuffer (Linux, TCP listeners).
//
// Connections are counted per Server, over all its listeners. Closing the returned
// listener closes ln.
func (s *Server) Listener(ln net.Listener) net.Listener {
	if l, ok := ln.(*limitListener); ok && l.d == s.opts.defense {
		return l
	}
	if err := setSendBuffer(ln, s.opts.SocketSendBuffer); err != nil {
		// The sockets work without it, with the kernel's buffers: say so once.
		s.opts.Logger.Warn("server: cannot set SocketSendBuffer on the listener; the kernel's send buffers apply", "err", err)
	}
	l := &limitListener{
		Listener: ln,
		d:        s.opts.defense,
		max:      int64(s.opts.MaxConnections),
		log:      s.opts.Logger,
		done:     make(chan struct{}),
		slots:    make(chan struct{}, maxLingering),
		lingerAt: make(map[net.Conn]struct{}),
	}
	l.restoreReserve() // without it, EMFILE only backs off
	return l
}

// setTimeouts gives the app's fasthttp server read timeouts when it has none, so a
// client that sends its request slowly, partly or not at all cannot hold a connection
// (and its descriptor) forever. See Mount.
func (s *Server) setTimeouts(fs *fasthttp.Server) {
	if fs.ReadTimeout != 0 {
		return // the app chose; a zero IdleTimeout then means ReadTimeout to fasthttp
	}
	fs.ReadTimeout = s.opts.HandshakeTimeout
	if fs.IdleTimeout == 0 {
		fs.IdleTimeout = s.opts.PingInterval + s.opts.PongTimeout
	}
}

const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
	// maxLingering bounds the refusals that wait for the client to read its 503
	// (each holds a descriptor for up to lingerFor); past it refusals are immediate.
	maxLingering = 32
	lingerFor    = 500 * time.Millisecond
	// shedWindow is how long, with descriptors exhausted, Accept waits for one more
	// backlogged connection to refuse; maxShed bounds one round.
	shedWindow = 10 * time.Millisecond
	maxShed    = 1024
)

// busy is the answer to a connection past the limit: it is complete, so the client
// reads a status rather than a reset, and tells it to come back rather than retry now.
var busy = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: 20\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n\r\n" +
	"server at capacity.\n")

// limitListener is what Listener returns.
//
// Concurrency: Accept is called by one goroutine (fasthttp's accept loop); Close may
// run concurrently with it. The episode fields belong to Accept; resMu guards the
// spare descriptor.
type limitListener struct {
	net.Listener
	d   *defense
	max int64
	log *slog.Logger

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	resMu   sync.Mutex
	reserve *os.File // the spare descriptor; nil while lent out, unavailable or closed
	resDone bool     // Close released the reserve for good

	// An episode is a run of failed accepts; it is logged when it starts and ends.
	failing  bool
	failures int
	shed     int
	since    time.Time

	slots     chan struct{} // one per lingering refusal
	lingerMu  sync.Mutex
	lingerAt  map[net.Conn]struct{}
	lingering sync.WaitGroup
}

// Accept implements net.Listener.
func (l *limitListener) Accept() (net.Conn, error) {
	delay := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.recovered()
			if l.d.open.Add(1) > l.max {
				l.d.open.Add(-1)
				l.refuse(c)
				continue
			}
			return &countedConn{Conn: c, open: &l.d.open}, nil
		}
		if !retryable(err) {
			return nil, err
		}
		l.failed(err)
		if fdExhausted(err) {
			l.shedBacklog()
		}
		if delay == 0 {
			delay = minAcceptDelay
		} else {
			delay = min(2*delay, maxAcceptDelay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed // fasthttp's accept loop ends quietly on this
		}
	}
}

// Close implements net.Listener: it closes the wrapped listener and ends the refusals
// still waiting for their client.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() {
		close(l.done)
		l.lingerMu.Lock()
		for c := range l.lingerAt {
			_ = c.SetDeadline(time.Now())
		}
		l.lingerMu.Unlock()
		l.lingering.Wait()
		l.resMu.Lock()
		l.resDone = true
		if l.reserve != nil {
			_ = l.reserve.Close()
			l.reserve = nil
		}
		l.resMu.Unlock()
	})
	return err
}

func (l *limitListener) failed(err error) {
	l.failures++
	if l.failing {
		return
	}
	l.failing, l.since = true, time.Now()
	advice := ""
	if fdExhausted(err) {
		advice = "; new connections get 503 until descriptors free up: raise the file limit (ulimit -n) or lower server.Options.MaxConnections"
	}
	l.d.logs.Log(l.log, slog.LevelError, logAccept, "canal: accept failed, retrying"+advice, "err", err, "open", l.d.open.Load())
}

func (l *limitListener) recovered() {
	if !l.failing {
		return
	}
	l.d.logs.Log(l.log, slog.LevelWarn, logAccept, "canal: accepting again", "failures", l.failures,
		"refused", l.shed, "after", time.Since(l.since).Round(time.Millisecond))
	l.failing, l.failures, l.shed = false, 0, 0
	l.restoreReserve()
}

// restoreReserve opens the spare descriptor unless it is open (or Close released it).
// Opening fails while descriptors are exhausted; the next episode's end retries.
func (l *limitListener) restoreReserve() {
	l.resMu.Lock()
	defer l.resMu.Unlock()
	if l.reserve == nil && !l.resDone {
		l.reserve, _ = os.Open(os.DevNull)
	}
}

// releaseReserve closes the spare descriptor so that accept can use its number, and
// reports whether there was one.
func (l *limitListener) releaseReserve() bool {
	l.resMu.Lock()
	defer l.resMu.Unlock()
	if l.reserve == nil {
		return false
	}
	_ = l.reserve.Close()
	l.reserve = nil
	return true
}

// shedBacklog answers 503 to the connections waiting in the backlog while the process
// has no descriptor to accept them with: it lends the spare descriptor to accept,
// refuses each connection at once, and takes the descriptor back.
func (l *limitListener) shedBacklog() {
	dl, ok := l.Listener.(interface{ SetDeadline(time.Time) error })
	if !ok || !l.releaseReserve() {
		return
	}
	for range maxShed {
		if dl.SetDeadline(time.Now().Add(shedWindow)) != nil {
			break
		}
		c, err := l.Listener.Accept()
		if err != nil {
			break // the window passed with no one waiting, or the listener closed
		}
		l.shed++
		l.d.shed.Add(1)
		answerBusy(c, false)
	}
	_ = dl.SetDeadline(time.Time{})
	l.restoreReserve()
}

// refuse answers a connection past MaxConnections. It lets the client read the 503
// before the socket closes (closing with its request unread would reset the
// connection, and a reset can destroy the answer) on a goroutine of its own while
// there are slots, else at once.
func (l *limitListener) refuse(c net.Conn) {
	l.d.shed.Add(1)
	l.d.logs.Log(l.log, slog.LevelWarn, logLimit,
		"canal: connection limit reached, answering 503: raise server.Options.MaxConnections (and the file limit) if the host has room",
		"max_connections", l.max)
	select {
	case l.slots <- struct{}{}:
	default:
		answerBusy(c, false)
		return
	}
	l.lingerMu.Lock()
	select {
	case <-l.done:
		l.lingerMu.Unlock()
		<-l.slots
		answerBusy(c, false)
		return
	default:
	}
	l.lingerAt[c] = struct{}{}
	l.lingering.Add(1)
	l.lingerMu.Unlock()
	go func() {
		defer l.lingering.Done()
		answerBusy(c, true)
		l.lingerMu.Lock()
		delete(l.lingerAt, c)
		l.lingerMu.Unlock()
		<-l.slots
	}()
}

// answerBusy writes the 503 and closes c. With linger it first half-closes and reads
// what the client sent, until it closes or lingerFor passes.
func answerBusy(c net.Conn, linger bool) {
	wait := 5 * time.Millisecond // a fresh socket's buffer takes the answer at once
	if linger {
		wait = lingerFor
	}
	_ = c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.Write(busy); err == nil && linger {
		if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = c.SetReadDeadline(time.Now().Add(lingerFor))
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
	}
	_ = c.Close()
}

// fdExhausted reports the accept errors that mean "no descriptor left".
func fdExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// retryable reports accept errors that pass by themselves: descriptors or memory
// running out, a connection reset before it was accepted, a timeout.
func retryable(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	if fdExhausted(err) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// countedConn gives its slot back when closed, once however often Close is called.
// fasthttp hands this very conn to hijack handlers, so Canal's sockets are counted
// until Canal closes them.
type countedConn struct {
	net.Conn
	open   *atomic.Int64
	closed atomic.Bool
}

// Close implements net.Conn.
func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.open.Add(-1)
	}
	return err
}

// SyscallConn keeps the wrapped conn's descriptor reachable: Canal's writer writes to
// it directly, without blocking.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// ReadFrom keeps the wrapped conn's sendfile path for files fasthttp serves.
func (c *countedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// defense holds what the Server's protections share between the copies of Options:
// the parsed Origins, the open-connection count and the log rate limits. It is made by
// withDefaults.
type defense struct {
	origins originPolicy
	open    atomic.Int64  // connections Listen and Listener accepted and not yet closed
	shed    atomic.Uint64 // connections they answered 503 instead (Stats.Shed)
	// logs holds back repeated lines, keyed by the logKey constants: an attack or an
	// outage costs a line a second, not one per connection.
	logs ratelog.Limiter
}

// Keys of defense.logs: kinds of event, never client input.
const (
	logAccept = "accept"
	logLimit  = "limit"
	logOrigin = "origin"
)
