package history

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/canal-rt/canal"
)

// Defaults and bounds.
const (
	// DefaultBuffer is Recovery's limit of live messages held during a catch-up.
	DefaultBuffer = 1000
	// page is how many messages Catchup asks History for at once.
	page = 500
	// catchupRounds bounds Catchup's consecutive re-reads that emit nothing new
	// while the live stream keeps showing gaps.
	catchupRounds = 8
)

// ErrGaveUp: Catchup read the history 8 times in a row without getting further
// (emit refused every message, or live messages are lost faster than the history
// can be read).
var ErrGaveUp = errors.New("history: could not catch up with the live messages")

// Recovery is one subscriber's view of one group: it turns the group's live messages
// and its history into one stream without a gap or a duplicate, in offset order.
// See the package documentation for the algorithm.
//
// emit is called with the recovery's lock held, from Live's or Catchup's goroutine,
// one message at a time in order: it must not block, nor call the Recovery. It
// returns false when it could not take the message (the connection's queue is
// full): the recovery then stops at the message before and reads the rest from the
// history at the next Catchup. Messages of other groups, or without a position, are
// passed through in arrival order (buffered like the others during a catch-up); one
// that emit refuses is lost.
//
// A live message the layer itself lost (a full process queue in Redis) shows as a
// gap when the next one arrives. Running Catchup now and then (every half minute,
// say) also finds a lost last message; it costs one History call and emits nothing
// when nothing is missing.
//
// Recovery is safe for concurrent use: Live from the layer's goroutines while
// Catchup runs on the connection's.
type Recovery struct {
	group string
	emit  func(canal.Message) bool
	limit int

	mu       sync.Mutex
	pos      canal.Position // of the last message emitted, or the starting point
	live     bool
	buf      []canal.Message
	overflow bool
}

// New returns a Recovery of group from since (the position of the last message the
// client got; zero: none, start at the current position), holding at most buffer
// live messages during a catch-up (0: DefaultBuffer).
func New(group string, since canal.Position, buffer int, emit func(canal.Message) bool) *Recovery {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Recovery{group: group, emit: emit, limit: buffer, pos: since}
}

// Position returns the position of the last message emitted (or the starting point).
func (r *Recovery) Position() canal.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

// Live takes a message of the group as it arrives. It returns false when the stream
// showed a gap (or a new epoch) while live: the caller must run Catchup, meanwhile
// Live buffers.
func (r *Recovery) Live(msg canal.Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live {
		if len(r.buf) < r.limit {
			r.buf = append(r.buf, msg)
		} else {
			r.overflow = true // read back from the history by Catchup
		}
		return true
	}
	switch r.step(msg) {
	case stepGap:
		r.live = false
		r.buf = append(r.buf, msg)
		return false
	case stepRefused:
		r.live = false // msg is read back from the history
		return false
	}
	return true
}

type stepResult int

const (
	stepEmitted stepResult = iota
	stepDuplicate
	stepGap
	stepRefused // emit did not take it
)

// step emits msg if it is the next one; r.mu is held.
func (r *Recovery) step(msg canal.Message) stepResult {
	group, p, ok := canal.PositionOf(msg)
	switch {
	case !ok || group != r.group:
		if !r.emit(msg) {
			return stepRefused
		}
		return stepEmitted
	case p.Epoch != r.pos.Epoch:
		return stepGap
	case p.Offset <= r.pos.Offset:
		return stepDuplicate
	case p.Offset != r.pos.Offset+1:
		return stepGap
	}
	if !r.emit(msg) {
		return stepRefused
	}
	r.pos = p
	return stepEmitted
}

// Catchup emits the group's messages since the last emitted, from the history, then
// those buffered by Live, and switches to live. It returns the position reached;
// canal.ErrNotRecovered when the history no longer reached back (the client must
// reload its state; the recovery went on from the group's current position and is
// live); ErrGaveUp; or the layer's error (then nothing changed and it may be run
// again).
func (r *Recovery) Catchup(ctx context.Context, l canal.HistoryLayer) (canal.Position, error) {
	notRecovered := false
	for stuck := 0; stuck < catchupRounds; {
		r.mu.Lock()
		since := r.pos
		r.mu.Unlock()

		var got []canal.Message
		head, lost, err := r.read(ctx, l, since, &got)
		if err != nil {
			return since, err
		}
		notRecovered = notRecovered || lost

		r.mu.Lock()
		if lost || since.Epoch == "" {
			r.pos = head // nothing before head can be delivered
		}
		gap := r.overflow
		r.overflow = false
		for _, m := range got {
			// Duplicates (of a concurrent Live) are skipped by offset.
			if res := r.step(m); res == stepGap || res == stepRefused {
				gap = true
				break
			}
		}
		buf := r.buf
		r.buf = nil
		for i, m := range buf {
			if gap {
				r.buf = append(r.buf, buf[i:]...) // kept in order for the next round
				break
			}
			switch r.step(m) {
			case stepGap:
				r.buf = append(r.buf, buf[i:]...)
				gap = true
			case stepRefused:
				r.buf = append(r.buf, buf[i+1:]...) // m itself is in the history
				gap = true
			}
		}
		if !gap {
			r.live = true
			pos := r.pos
			r.mu.Unlock()
			if notRecovered {
				return pos, fmt.Errorf("history: %q: %w", r.group, canal.ErrNotRecovered)
			}
			return pos, nil
		}
		if r.pos == since {
			stuck++
		} else {
			stuck = 0
		}
		r.mu.Unlock()
	}
	return r.Position(), fmt.Errorf("history: %q: %w after %d reads", r.group, ErrGaveUp, catchupRounds)
}

// read appends the history after since to got, page by page up to the head it
// reports; lost is true when the history does not reach back to since.
func (r *Recovery) read(ctx context.Context, l canal.HistoryLayer, since canal.Position, got *[]canal.Message) (head canal.Position, lost bool, err error) {
	for {
		msgs, h, err := l.History(ctx, r.group, since, page)
		if errors.Is(err, canal.ErrNotRecovered) {
			return h, true, nil
		}
		if err != nil {
			return canal.Position{}, false, err
		}
		*got = append(*got, msgs...)
		if len(msgs) == 0 {
			return h, false, nil
		}
		_, last, ok := canal.PositionOf(msgs[len(msgs)-1])
		if !ok || last.Offset >= h.Offset {
			return h, false, nil
		}
		since = last
	}
}
