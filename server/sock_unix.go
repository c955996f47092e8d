//go:build unix

package server

import "syscall"

// tryWrite writes what the kernel takes at once. EAGAIN is not an error.
func (s *sock) tryWrite(p []byte) (int, error) {
	var n int
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), p)
			if werr != syscall.EINTR {
				return true // never park: the flusher does the waiting
			}
		}
	})
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
