package server

import (
	"log/slog"
	"math"
	"sync/atomic"
)

// Stats is a snapshot of a Server's counters and bounds, for metrics and tests.
// Counters only grow; the other fields are current values.
type Stats struct {
	// Conns is the connections open now, handshaking ones included.
	Conns int
	// SessionWorkers is the goroutines running session calls now, and
	// SessionWorkersPeak the most at once so far; never above Options.SessionWorkers.
	SessionWorkers, SessionWorkersPeak int
	// WriteWorkers is the goroutines writing to sockets (fixed: GOMAXPROCS).
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
	// Received counts the messages clients sent (WebSocket text and binary messages;
	// event streams send none), and Sent the frames handed to sockets (messages, or
	// events on a stream; not pings or closes).
	Received, Sent uint64

	// Sockets is the connections Listen and Listener hold open now (sockets, streams
	// and plain HTTP requests alike), which MaxConns bounds; Shed counts those they
	// answered 503 instead (past MaxConnections, or while the process had no file
	// descriptor left).
	Sockets int
	Shed    uint64

	// The bounds in force (Options after defaults), for a dashboard or an alert on
	// usage: MaxSessionWorkers is Options.SessionWorkers, MaxBuffered
	// MaxBufferedBytes, and MaxConns MaxConnections (0: no limit).
	MaxSessionWorkers, MaxConns int
	MaxBuffered                 int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	sw, peak := s.sessions.size()
	maxConns := s.opts.MaxConnections
	if maxConns == math.MaxInt { // the file limit is unknown or unlimited
		maxConns = 0
	}
	return Stats{
		Conns:              s.Conns(),
		SessionWorkers:     sw,
		SessionWorkersPeak: peak,
		WriteWorkers:       s.writers.keep, // writers never grow past the warm ones
		Buffered:           s.budget.inUse(),
		SlowConsumers:      s.stats.slowConsumers.Load(),
		EventsRefused:      s.stats.eventsRefused.Load(),
		Frames:             s.stats.frames.Load(),
		FramesDirect:       s.stats.framesDirect.Load(),
		Received:           s.stats.received.Load(),
		Sent:               s.stats.sent.Load(),
		Sockets:            int(s.opts.defense.open.Load()),
		Shed:               s.opts.defense.shed.Load(),
		MaxSessionWorkers:  s.opts.SessionWorkers,
		MaxConns:           maxConns,
		MaxBuffered:        s.opts.MaxBufferedBytes,
	}
}

type counters struct {
	slowConsumers, eventsRefused, frames, framesDirect atomic.Uint64
	received, sent                                     atomic.Uint64 // one Add per message read, per batch written
}

// logLimited logs msg at warning level unless a line with the same key went out in
// the last second (internal/ratelog): a flood of refused handshakes or slow clients
// costs a line a second, not a line each. Keys are the server's own constants.
func (s *Server) logLimited(key, msg string, args ...any) {
	s.logs.Log(s.opts.Logger, slog.LevelWarn, key, msg, args...)
}
