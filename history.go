package canal

import (
	"context"
	"errors"
	"math"
)

// ErrNotRecovered: a group's history no longer reaches back to the position a client
// gave (trimmed by size or age, or lost with Redis: its epoch changed). The client
// missed messages that cannot be sent again and should reload its state.
var ErrNotRecovered = errors.New("canal: history does not reach back to the position")

// ErrNoHistory: the group keeps no history (no history rule matches its name).
var ErrNoHistory = errors.New("canal: group keeps no history")

// PositionKey is the key under which a message published with history carries its
// Position and group, as a map {"offset": integer, "epoch": string, "group": string}.
// Django consumers see it too, as an ordinary key of the event.
const PositionKey = "__canal_pos__"

// Position is a message's place in its group's history. Offsets count a group's
// messages from 1 and are the same for every member in every process; Epoch names
// one continuous history, and changes when the history was lost (its Redis keys
// expired or were flushed, Redis restarted empty), so that a position of an older
// epoch is known not to be recoverable rather than silently wrong.
type Position struct {
	Offset uint64
	Epoch  string
}

// HistoryLayer is a Layer whose groups can keep history: the layers of package
// layers implement it for the groups their history rules name.
//
// The recovery algorithm that uses it without a gap or a duplicate (subscribe first,
// then read History, then go live past the last offset delivered) is package
// history's Recovery.
type HistoryLayer interface {
	Layer
	// Publish sends msg to group's members, as GroupSend does, and appends it to
	// the group's history under the next position, which it returns; every member
	// gets msg with that position under PositionKey. A group with no history rule:
	// ErrNoHistory. GroupSend to a group with history publishes the same way.
	Publish(ctx context.Context, group string, msg Message) (Position, error)
	// History returns group's messages after since, oldest first (at most limit;
	// limit <= 0: as many as the layer returns at once), each carrying its position
	// under PositionKey, and the group's current position: its newest message's, so
	// that a caller that got fewer knows to ask again from its last. A zero since.Epoch asks for no messages, only the current position. A
	// since the history no longer reaches back to (other epoch, trimmed, or ahead of
	// the history): ErrNotRecovered, with the current position.
	History(ctx context.Context, group string, since Position, limit int) ([]Message, Position, error)
}

// PositionOf returns the group and position a message published with history
// carries; ok is false for any other message.
func PositionOf(msg Message) (group string, p Position, ok bool) {
	m, ok := msg[PositionKey].(map[string]any)
	if !ok {
		return "", Position{}, false
	}
	group, _ = m["group"].(string)
	p, ok = positionIn(m)
	return group, p, ok
}

func positionIn(m map[string]any) (Position, bool) {
	epoch, ok := m["epoch"].(string)
	if !ok || epoch == "" {
		return Position{}, false
	}
	var off uint64
	switch v := m["offset"].(type) {
	case uint64:
		off = v
	case int64:
		if v < 0 {
			return Position{}, false
		}
		off = uint64(v)
	case int:
		if v < 0 {
			return Position{}, false
		}
		off = uint64(v)
	case float64: // JSON
		if v < 1 || v != math.Trunc(v) || v > 1<<53 {
			return Position{}, false
		}
		off = uint64(v)
	default:
		return Position{}, false
	}
	if off == 0 {
		return Position{}, false
	}
	return Position{Offset: off, Epoch: epoch}, true
}

// WithPosition returns a shallow copy of msg carrying group and p under PositionKey.
func WithPosition(msg Message, group string, p Position) Message {
	out := make(Message, len(msg)+1)
	for k, v := range msg {
		out[k] = v
	}
	out[PositionKey] = map[string]any{"offset": p.Offset, "epoch": p.Epoch, "group": group}
	return out
}
