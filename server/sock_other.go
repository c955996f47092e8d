//go:build !unix

package server

// tryWrite is never reached where sockets have no non-blocking writes: newSock leaves
// raw nil there, and every write goes through the flusher.
func (s *sock) tryWrite(p []byte) (int, error) { return 0, nil }

const nonBlockingWrites = false

type rawWrite struct{}
