package layers

import (
	"log/slog"
	"sync/atomic"

	"github.com/canal-rt/canal/internal/ratelog"
)

// malformedCounter counts messages from Redis that cannot be read and logs them, at
// most once a second so that hostile input cannot flood the log. The payload is never
// logged, only where it was and its size. Concurrency: safe for concurrent use.
type malformedCounter struct {
	n   atomic.Uint64
	log ratelog.Limiter
}

// report counts one skipped message and logs it unless a line went out in the last
// second. where names the attribute holding name ("key" or "channel").
func (m *malformedCounter) report(log *slog.Logger, msg, where, name string, size int, err error) {
	n := m.n.Add(1)
	m.log.Log(log, slog.LevelWarn, "malformed", msg, where, name, "bytes", size, "reason", err.Error(), "malformed_total", n)
}

// count is the number of messages skipped so far.
func (m *malformedCounter) count() uint64 { return m.n.Load() }
