//go:build !(darwin || linux || openbsd)

package server

// tryWrite is never reached where sockets have no non-blocking vectored writes:
// newSock leaves raw nil there, and every write goes through the flusher.
func (s *sock) tryWrite([][]byte) (int, error) { return 0, nil }

// writeAll is never reached either: raw is nil.
func (s *sock) writeAll([][]byte) error { return nil }

const nonBlockingWrites = false

type rawWrite struct{}
