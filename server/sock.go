package server

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// sock is the write side of one socket. Every byte to the peer goes through it: the
// connection's frames (from the writer), and the websocket library's own control
// frames (pongs, the close echo, protocol errors) from the read loop. Writes are
// whole frames, so mu keeps them from interleaving.
//
// Why writes never block a shared goroutine: a write is first tried without waiting
// (a non-blocking write system call). What the kernel does not take stays in pending,
// and a goroutine of the socket's own, the flusher, writes it out with the normal,
// blocking write bounded by WriteTimeout. So a peer that stops reading costs one
// goroutine and at most Options.SendBuffer bytes, and never holds up the worker
// goroutines that write to everybody else. Past SendBuffer (or the process-wide
// MaxBufferedBytes) the peer is a slow consumer: the write fails with errSlowConsumer
// and the connection is dropped.
//
// Sockets without non-blocking writes (TLS) always take the flusher's path.
//
// Concurrency: safe for concurrent use.
type sock struct {
	net.Conn
	raw     syscall.RawConn // nil when the socket has no file descriptor to write to directly
	budget  *budget
	limit   int             // Options.SendBuffer
	wait    time.Duration   // Options.WriteTimeout: the most one blocked write may take
	failed  func(error)     // told once, from the flusher, when a write fails
	wg      *sync.WaitGroup // the connection's: counts the flusher
	drained func()          // told when the flusher has written everything out

	mu       sync.Mutex
	pending  []byte // taken from a writer, not yet by the kernel
	inFlight int    // bytes the flusher is writing now
	flushing bool   // the flusher owns the socket's writes
	err      error  // sticky: once a write failed, every later one fails
	capture  *[]byte
	rw       rawWrite // the non-blocking write's arguments (sock_unix.go)
	closeOut bool     // close the socket once pending is written
}

// errSlowConsumer: the peer does not take what it is sent (see Options.SendBuffer).
var errSlowConsumer = errors.New("server: slow consumer: the client does not read what it is sent")

func newSock(c net.Conn, o *Options, b *budget, failed func(error)) *sock {
	s := &sock{Conn: c, budget: b, limit: o.SendBuffer, wait: o.WriteTimeout, failed: failed}
	if sc, ok := c.(syscall.Conn); ok && nonBlockingWrites {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	return s
}

// Write implements net.Conn for the websocket library: p is one whole frame (or the
// 101 answer during the upgrade).
func (s *sock) Write(p []byte) (int, error) {
	if err := s.write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetWriteDeadline implements net.Conn. Deadlines are the sock's business (see the
// type's comment): the library's are ignored.
func (s *sock) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline implements net.Conn; only the read half applies.
func (s *sock) SetDeadline(t time.Time) error { return s.Conn.SetReadDeadline(t) }

// write sends p, or keeps what the kernel does not take for the flusher. It never
// waits for the peer. p may be reused by the caller once write returns.
func (s *sock) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return s.err
	case len(p) == 0:
		return nil
	case s.capture != nil:
		*s.capture = append(*s.capture, p...)
		return nil
	case s.flushing || s.raw == nil:
		return s.keepLocked(p)
	}
	n, err := s.tryWrite(p)
	if err != nil {
		s.err = err
		return err
	}
	if n == len(p) {
		return nil
	}
	return s.keepLocked(p[n:])
}

// keepLocked queues p for the flusher, within the socket's and the process's limits.
func (s *sock) keepLocked(p []byte) error {
	held := len(s.pending) + s.inFlight
	// One write is always taken when nothing is held, however large: a frame bigger
	// than SendBuffer is not by itself a slow client.
	if (held > 0 && held+len(p) > s.limit) || !s.budget.take(len(p)) {
		s.err = errSlowConsumer
		s.dropLocked()
		return s.err
	}
	s.pending = append(s.pending, p...)
	if !s.flushing {
		s.flushing = true
		if s.wg != nil {
			s.wg.Add(1)
		}
		go s.flush()
	}
	return nil
}

// dropLocked forgets pending bytes and gives them back to the budget.
func (s *sock) dropLocked() {
	s.budget.give(len(s.pending))
	s.pending = nil
}

// flush writes pending out, blocking, until it is empty or a write fails.
func (s *sock) flush() {
	if s.wg != nil {
		defer s.wg.Done()
	}
	for {
		s.mu.Lock()
		if s.err != nil || len(s.pending) == 0 {
			s.flushing = false
			s.dropLocked()
			ok := s.err == nil
			closeOut := s.closeOut && ok
			s.mu.Unlock()
			if closeOut {
				_ = s.Conn.Close()
			}
			if ok && s.drained != nil {
				s.drained()
			}
			return
		}
		buf := s.pending
		s.pending = nil
		s.inFlight = len(buf)
		s.mu.Unlock()

		_ = s.Conn.SetWriteDeadline(time.Now().Add(s.wait))
		_, err := s.Conn.Write(buf)
		s.budget.give(len(buf))

		s.mu.Lock()
		s.inFlight = 0
		if err != nil && s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
		if err != nil {
			s.failed(err)
		}
	}
}

// closeWhenWritten closes the socket now, or once the flusher has written what it
// holds (an event stream's last "close" event must reach the client).
func (s *sock) closeWhenWritten() {
	s.mu.Lock()
	if s.flushing {
		s.closeOut = true
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	_ = s.Conn.Close()
}

// buffered is how many bytes wait for the peer.
func (s *sock) buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) + s.inFlight
}

// beginCapture collects writes in memory (the upgrade's 101 answer and the frames
// Connect queued), so that endCapture sends them in one system call.
func (s *sock) beginCapture(buf *[]byte) {
	s.mu.Lock()
	s.capture = buf
	s.mu.Unlock()
}

func (s *sock) endCapture() error {
	s.mu.Lock()
	p := *s.capture
	s.capture = nil
	s.mu.Unlock()
	return s.write(p)
}

// budget is the process-wide limit on bytes held for peers (Options.MaxBufferedBytes).
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

func (b *budget) take(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+int64(n) > b.max {
		return false
	}
	b.used += int64(n)
	return true
}

func (b *budget) give(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= int64(n)
	b.mu.Unlock()
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
