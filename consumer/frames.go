package consumer

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync/atomic"

	"github.com/canal-rt/canal"
)

// FrameFunc turns a layer event into the frame its consumers send to their clients.
// It must depend on the message only, not on the connection.
type FrameFunc func(m canal.Message) (canal.Frame, error)

// JSONFrame is a FrameFunc that sends the JSON encoding of what build returns.
func JSONFrame(build func(m canal.Message) any) FrameFunc {
	return func(m canal.Message) (canal.Frame, error) {
		b, err := json.Marshal(build(m))
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
	last  atomic.Pointer[memoEntry]
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
	fm.last.Store(&memoEntry{msg: m, frame: f, err: err})
	return f, err
}

func sameMap(a, b canal.Message) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
