package consumer

import (
	"log/slog"
	"sync/atomic"

	"github.com/canal-rt/canal/internal/ratelog"
)

// Stats counts the layer events a consumer Handler dropped instead of closing
// connections over them. A layer event is shared by every member of a group, so one
// bad message must cost that message only, not every socket in the group.
type Stats struct {
	// BadFrames: messages whose Options.Frames builder failed (a FrameFunc error; NaN
	// or ±Inf in a JSONFrame): skipped for every member. Counted once per message
	// (twice at most when two bad messages of one type interleave).
	BadFrames uint64
	// BadEvents: events whose handler (Options.Events or the Event method) returned an
	// error wrapping ErrEncode, e.g. SendJSON of NaN: dropped for that connection.
	// Counted once per connection.
	BadEvents uint64
	// Unhandled: events with no handler in Events or Frames and no Event method.
	// Counted once per connection.
	Unhandled uint64
	// Invalid: events without a usable "type" (a peer that bypassed the layer's
	// checks). Counted once per connection.
	Invalid uint64
	// PresenceErrors: presence writes (Options.Presence) that failed; the connection
	// went on without that entry or event.
	PresenceErrors uint64
	// RecoverCheckErrors: reads of a group's position by the position check
	// (Options.RecoverCheck) that failed; tried again at the next round, no
	// connection closed.
	RecoverCheckErrors uint64
	// RecoverCheckCatchups: connections the position check found behind their
	// group's history (a live message lost on the way, or a history lost with
	// Redis) and caught up.
	RecoverCheckCatchups uint64
}

// drops counts and logs dropped events. Each kind has its own limiter keyed by event
// type, so a burst costs one log line per type and second, not one per member.
type drops struct {
	logger                                   *slog.Logger
	badFrames, badEvents, unhandled, invalid atomic.Uint64
	frameLog, eventLog, unhandledLog         ratelog.Limiter
	invalidLog                               ratelog.Limiter
	presenceErrors                           atomic.Uint64
	presenceLog                              ratelog.Limiter
	recoverCheckErrors, recoverCheckCatchups atomic.Uint64
	recoverCheckLog                          ratelog.Limiter
}

func (d *drops) stats() Stats {
	return Stats{
		BadFrames: d.badFrames.Load(),
		BadEvents: d.badEvents.Load(),
		Unhandled: d.unhandled.Load(),
		Invalid:   d.invalid.Load(),

		PresenceErrors: d.presenceErrors.Load(),

		RecoverCheckErrors:   d.recoverCheckErrors.Load(),
		RecoverCheckCatchups: d.recoverCheckCatchups.Load(),
	}
}

// badFrame records a message whose frame could not be built. The error is logged,
// never the message: it may hold anything.
func (d *drops) badFrame(t string, err error) {
	n := d.badFrames.Add(1)
	d.frameLog.Log(d.logger, slog.LevelWarn, t, "canal: skipped a layer event whose frame cannot be built",
		"type", t, "err", err, "bad_frames_total", n)
}

func (d *drops) badEvent(t, route string, err error) {
	n := d.badEvents.Add(1)
	d.eventLog.Log(d.logger, slog.LevelWarn, t, "canal: dropped a layer event its handler cannot encode",
		"type", t, "route", route, "err", err, "bad_events_total", n)
}

func (d *drops) noHandler(t, route string) {
	n := d.unhandled.Add(1)
	d.unhandledLog.Log(d.logger, slog.LevelWarn, t, "canal: no handler for layer event",
		"type", t, "route", route, "unhandled_total", n)
}

func (d *drops) invalidEvent(route string, err error) {
	n := d.invalid.Add(1)
	d.invalidLog.Log(d.logger, slog.LevelWarn, route, "canal: dropped layer event",
		"err", err, "route", route, "invalid_total", n)
}

func (d *drops) presenceFailed(op, group string, err error) {
	n := d.presenceErrors.Add(1)
	d.presenceLog.Log(d.logger, slog.LevelWarn, op, "canal: presence "+op+" failed",
		"group", group, "err", err, "presence_errors_total", n)
}

// recoverCheckFailed records a failed read of the position check. One log line a
// second at most, whatever the number of groups failing together (Redis down).
func (d *drops) recoverCheckFailed(group string, err error) {
	n := d.recoverCheckErrors.Add(1)
	d.recoverCheckLog.Log(d.logger, slog.LevelWarn, "read", "canal: recovery position check failed; tried again at the next round",
		"group", group, "err", err, "recover_check_errors_total", n)
}
