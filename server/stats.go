package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Server's counters and bounds, for metrics and tests.
// Counters only grow; the other fields are current values.
type Stats struct {
	// Conns is the connections open now, handshaking ones included.
	Conns int
	// SessionWorkers is the goroutines running session calls now, and
	// SessionWorkersPeak the most at once so far; never above Options.SessionWorkers.
	SessionWorkers, SessionWorkersPeak int
	// WriteWorkers is the goroutines writing to sockets (fixed: max(2, GOMAXPROCS)).
	WriteWorkers int
	// Buffered is the bytes held now for peers that have not taken them (at most
	// Options.MaxBufferedBytes).
	Buffered int64
	// SlowConsumers counts connections dropped because their client did not read
	// what it was sent (Disconnect got 1013).
	SlowConsumers uint64
	// EventsRefused counts layer events a connection could not take because
	// EventQueue events already waited for its session: the layer counts its channel
	// as full, as Channels does at capacity.
	EventsRefused uint64
	// Frames counts ready group frames delivered (consumer.Options.Frames), and
	// FramesDirect those that went straight to the outbox, without a session call.
	Frames, FramesDirect uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	sw, peak := s.sessions.size()
	ww, _ := s.writers.size()
	return Stats{
		Conns:              s.Conns(),
		SessionWorkers:     sw,
		SessionWorkersPeak: peak,
		WriteWorkers:       max(ww, s.writers.keep),
		Buffered:           s.budget.inUse(),
		SlowConsumers:      s.stats.slowConsumers.Load(),
		EventsRefused:      s.stats.eventsRefused.Load(),
		Frames:             s.stats.frames.Load(),
		FramesDirect:       s.stats.framesDirect.Load(),
	}
}

type counters struct {
	slowConsumers, eventsRefused, frames, framesDirect atomic.Uint64
}

// logLimiter lets one line per key through per second and counts the others, so that
// a flood (a thousand refused handshakes, a thousand slow clients) costs a line a
// second, not a line each. Keys are the server's own constants: the map stays small.
type logLimiter struct {
	mu    sync.Mutex
	lines map[string]*limitedLine
}

type limitedLine struct {
	last       time.Time
	suppressed uint64
}

// logLimited logs msg at warning level unless a line with the same key went out in
// the last second; the next line that goes out says how many were suppressed.
func (s *Server) logLimited(key, msg string, args ...any) {
	s.logLimitedAt(slog.LevelWarn, key, msg, args...)
}

func (s *Server) logLimitedAt(level slog.Level, key, msg string, args ...any) {
	l := &s.logs
	l.mu.Lock()
	if l.lines == nil {
		l.lines = make(map[string]*limitedLine)
	}
	e := l.lines[key]
	if e == nil {
		e = &limitedLine{}
		l.lines[key] = e
	}
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < time.Second {
		e.suppressed++
		l.mu.Unlock()
		return
	}
	e.last = now
	suppressed := e.suppressed
	e.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.opts.Logger.Log(context.Background(), level, msg, args...)
}
