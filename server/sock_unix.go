//go:build darwin || linux || openbsd

package server

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// rawWrite is the sock's one closure for RawConn.Write, made once per socket: a closure
// made per write would be an allocation per frame delivered. Its arguments and results
// are sock fields, guarded by mu like the write itself.
type rawWrite struct {
	v   [][]byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// maxIOV bounds one writev's vector (IOV_MAX is 1024 where it is smallest); the rest
// of a longer write is not taken at once, and waits for the flusher.
const maxIOV = 1024

// tryWrite writes what the kernel takes of v at once, in one writev. EAGAIN is not an
// error.
func (s *sock) tryWrite(v [][]byte) (int, error) {
	w := &s.rw
	if w.fn == nil {
		w.fn = func(fd uintptr) bool {
			for {
				w.n, w.err = unix.Writev(int(fd), w.v)
				if w.err != syscall.EINTR {
					return true // never park: the flusher does the waiting
				}
			}
		}
	}
	w.v = v[:min(len(v), maxIOV)]
	err := s.raw.Write(w.fn)
	n, werr := w.n, w.err
	w.v, w.err = nil, nil
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// nonBlockingWrites: sockets are file descriptors that writev(2) takes without waiting.
const nonBlockingWrites = true

// writeAll is the flusher's write: segs in writevs, waiting for the peer as long as
// the socket's write deadline allows (a passed deadline is a timeout error).
func (s *sock) writeAll(segs [][]byte) error {
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		for len(segs) > 0 {
			n, e := unix.Writev(int(fd), segs[:min(len(segs), maxIOV)])
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false // park until the socket is writable, or the deadline
			case e != nil:
				werr = e
				return true
			}
			segs = consume(segs, n)
		}
		return true
	})
	if err != nil {
		return err
	}
	return werr
}
