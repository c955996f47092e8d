package server

import (
	"bufio"
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
// A write is a vector (vec): the writer's encode buffer, which it reuses, and large
// frame payloads by reference (a group message is encoded once and shared by its
// members). What the kernel does not take is kept as segments: copies of the buffer's
// bytes, in chunks the sock owns, and the payloads themselves, so a stalled peer holds
// references to the shared frames, not copies. The limits count the bytes either way.
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
	pending  [][]byte // taken from a writer, not yet by the kernel, in order (see keepLocked)
	held     int      // bytes in pending
	own      []byte   // the chunk that holds the sock's copies of lent bytes (keepLentLocked)
	tail     int      // pending[tail] ends at len(own), so a next copy extends it; -1: none
	tailAt   int      // where pending[tail] starts in own
	spare    [][]byte // pending's array, back from the flusher for reuse
	iov      [][]byte // the non-blocking write's vector, reused
	inFlight int      // bytes the flusher is writing now
	flushing bool     // the flusher owns the socket's writes
	err      error    // sticky: once a write failed, every later one fails
	capture  *[]byte
	rw       rawWrite // the non-blocking write's arguments (sock_unix.go)
	closeOut bool     // close the socket once pending is written
}

// errSlowConsumer: the peer does not take what it is sent (see Options.SendBuffer).
var errSlowConsumer = errors.New("server: slow consumer: the client does not read what it is sent")

func newSock(c net.Conn, o *Options, b *budget, failed func(error)) *sock {
	s := &sock{Conn: c, budget: b, limit: o.SendBuffer, wait: o.WriteTimeout, failed: failed, tail: -1}
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

// write sends p, or keeps a copy of what the kernel does not take for the flusher. It
// never waits for the peer. p may be reused by the caller once write returns.
func (s *sock) write(p []byte) error {
	v := vec{buf: p}
	return s.writev(&v)
}

// writev sends v: its lent buffer and the payloads it refers to, in one system call
// that never waits for the peer. What the kernel does not take is kept for the
// flusher: a copy of the lent buffer's bytes (the caller reuses it once writev
// returns), and the referred payloads themselves, which are frames' Data: shared by a
// group's members and never modified once sent (canal.Frame), so a peer that stopped
// reading holds a reference to the one encoded group message, not a copy of it.
func (s *sock) writev(v *vec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := v.len()
	switch {
	case s.err != nil:
		return s.err
	case total == 0:
		return nil
	case s.capture != nil:
		*s.capture = v.appendTo(*s.capture)
		return nil
	case s.flushing || s.raw == nil:
		return s.keepLocked(v, 0)
	}
	s.iov = v.segments(s.iov[:0])
	n, err := s.tryWrite(s.iov)
	clear(s.iov) // keeps no payload alive
	if err != nil {
		s.err = err
		return err
	}
	if n == total {
		return nil
	}
	return s.keepLocked(v, n)
}

// keepLocked queues v past its first skip bytes for the flusher, within the socket's
// and the process's limits.
func (s *sock) keepLocked(v *vec, skip int) error {
	n := v.len() - skip
	held := s.held + s.inFlight
	// One write is always taken when nothing is held, however large: a frame bigger
	// than SendBuffer is not by itself a slow client.
	if (held > 0 && held+n > s.limit) || !s.budget.take(n) {
		s.err = errSlowConsumer
		s.dropLocked()
		return s.err
	}
	if s.pending == nil {
		s.pending, s.spare = s.spare, nil
	}
	from := 0 // the lent buffer's bytes before from are queued or skipped
	for _, r := range v.refs {
		s.keepLentLocked(v.buf[from:r.at], &skip)
		from = r.at
		d := r.data
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		d, skip = d[skip:], 0
		s.pending = append(s.pending, d)
		s.tail = -1
	}
	s.keepLentLocked(v.buf[from:], &skip)
	s.held += n
	if !s.flushing {
		s.flushing = true
		if s.wg != nil {
			s.wg.Add(1)
		}
		go s.flush()
	}
	return nil
}

// keepLentLocked queues a copy of p, a part of a lent buffer, past *skip bytes
// (which it uses up).
func (s *sock) keepLentLocked(p []byte, skip *int) {
	if *skip >= len(p) {
		*skip -= len(p)
		return
	}
	p, *skip = p[*skip:], 0
	if cap(s.own)-len(s.own) < len(p) {
		// A new chunk; the old one stays with the segments that refer to it, so
		// nothing is copied twice. Chunks double, within what the limit lets the
		// socket hold: a stalled peer's copies cost at most about twice their size.
		c := max(2*cap(s.own), minOwnChunk)
		c = min(c, s.limit-s.held-s.inFlight)
		s.own = make([]byte, 0, max(c, len(p)))
		s.tail = -1
	}
	at := len(s.own)
	s.own = append(s.own, p...)
	if s.tail >= 0 { // right after the last segment's bytes: extend it
		s.pending[s.tail] = s.own[s.tailAt:len(s.own):len(s.own)]
		return
	}
	s.tail, s.tailAt = len(s.pending), at
	s.pending = append(s.pending, s.own[at:len(s.own):len(s.own)])
}

// minOwnChunk is the smallest allocation for a sock's copies: a few frames' headers
// and small payloads.
const minOwnChunk = 512

// dropLocked forgets pending bytes and gives them back to the budget.
func (s *sock) dropLocked() {
	s.budget.give(s.held)
	clear(s.pending)
	s.pending, s.held, s.tail = nil, 0, -1
	s.own = nil // segments in flight keep their chunk
}

// flush writes pending out, blocking, until it is empty or a write fails.
func (s *sock) flush() {
	if s.wg != nil {
		defer s.wg.Done()
	}
	for {
		s.mu.Lock()
		if s.err != nil || s.held == 0 {
			s.flushing = false
			s.dropLocked()
			s.spare = nil // an idle socket holds no memory
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
		segs, n := s.pending, s.held
		s.pending, s.held, s.tail = nil, 0, -1
		s.inFlight = n
		s.mu.Unlock()

		_ = s.Conn.SetWriteDeadline(time.Now().Add(s.wait))
		err := s.writeOut(segs)
		s.budget.give(n)
		clear(segs)

		s.mu.Lock()
		s.inFlight = 0
		if s.spare == nil {
			s.spare = segs[:0]
		}
		if err != nil && s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
		if err != nil {
			s.failed(err)
		}
	}
}

// writeOut writes segs, blocking within the write deadline: with writev on the file
// descriptor, or (TLS) joined into writes of up to joinSize bytes, since each write
// there is a record of its own.
func (s *sock) writeOut(segs [][]byte) error {
	if s.raw != nil {
		return s.writeAll(segs)
	}
	bw := joiners.Get().(*bufio.Writer)
	bw.Reset(s.Conn)
	defer func() {
		bw.Reset(nil)
		joiners.Put(bw)
	}()
	for _, seg := range segs {
		if _, err := bw.Write(seg); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// joiners join segments for sockets without writev. The pool holds at most one per
// flusher running, and the garbage collector empties it.
var joiners = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, joinSize) }}

const joinSize = 16 << 10

// consume drops the first n bytes of segs, in place.
func consume(segs [][]byte, n int) [][]byte {
	for len(segs) > 0 && n >= len(segs[0]) {
		n -= len(segs[0])
		segs = segs[1:]
	}
	if n > 0 {
		segs[0] = segs[0][n:]
	}
	return segs
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
	return s.held + s.inFlight
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
