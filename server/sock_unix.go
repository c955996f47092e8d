//go:build unix

package server

import "syscall"

// rawWrite is the sock's one closure for RawConn.Write, made once per socket: a closure
// made per write would be an allocation per frame delivered. Its arguments and results
// are sock fields, guarded by mu like the write itself.
type rawWrite struct {
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// tryWrite writes what the kernel takes at once. EAGAIN is not an error.
func (s *sock) tryWrite(p []byte) (int, error) {
	w := &s.rw
	if w.fn == nil {
		w.fn = func(fd uintptr) bool {
			for {
				w.n, w.err = syscall.Write(int(fd), w.p)
				if w.err != syscall.EINTR {
					return true // never park: the flusher does the waiting
				}
			}
		}
	}
	w.p = p
	err := s.raw.Write(w.fn)
	n, werr := w.n, w.err
	w.p, w.err = nil, nil
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

// nonBlockingWrites: sockets are file descriptors that write(2) takes without waiting.
const nonBlockingWrites = true
