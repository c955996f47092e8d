package consumer

import (
	"fmt"
	"reflect"
	"sync/atomic"

	"github.com/canal-rt/canal"
)

// FrameFunc turns a layer event into the frame its consumers send to their clients.
// It must depend on the message only, not on the connection.
type FrameFunc func(m canal.Message) (canal.Frame, error)

// JSONFrame is a FrameFunc that sends the JSON encoding of what build returns, encoded
// as SendJSON does (UTF-8, no HTML escaping, no trailing newline). A value JSON cannot
// hold (NaN from Django, say) is an error wrapping ErrEncode: the message is skipped.
func JSONFrame(build func(m canal.Message) any) FrameFunc {
	return func(m canal.Message) (canal.Frame, error) {
		b, err := marshalJSON(build(m))
		if err != nil {
			return canal.Frame{}, fmt.Errorf("consumer: JSONFrame: %w", err)
		}
		return canal.Frame{Data: b}, nil
	}
}

// frameMemo remembers the frame built for the last message of one event type. A group
// message reaches every member's consumer as the same Message value, one after the
// other, so one entry makes the build happen once per message instead of once per
// member.
//
// Concurrency: safe for concurrent use; two consumers may build the same frame at once,
// which is harmless (the result is the same).
type frameMemo struct {
	build FrameFunc
	typ   string
	drops *drops // nil in benchmarks
	last  atomic.Pointer[memoEntry]
	// lastBad is the last failed build, so that a bad message rebuilt by a member
	// that comes late (the memo moved on meanwhile) is not counted twice.
	lastBad atomic.Pointer[memoEntry]
}

type memoEntry struct {
	msg   canal.Message // kept so its address cannot be reused by another map
	frame canal.Frame
	err   error
}

func (fm *frameMemo) frame(m canal.Message) (canal.Frame, error) {
	if e := fm.last.Load(); e != nil && sameMap(e.msg, m) {
		return e.frame, e.err
	}
	f, err := fm.build(m)
	e := &memoEntry{msg: m, frame: f, err: err}
	fm.last.Store(e)
	if err != nil && fm.drops != nil {
		if prev := fm.lastBad.Swap(e); prev == nil || !sameMap(prev.msg, m) {
			fm.drops.badFrame(fm.typ, err)
		}
	}
	return f, err
}

func sameMap(a, b canal.Message) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
