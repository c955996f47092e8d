package consumer

import (
	"encoding/json"
	"testing"

	"github.com/canal-rt/canal"
)

// BenchmarkGroupFrame compares the frame a group event costs each member: built once
// per message (Options.Frames) or encoded by every member's handler (SendJSON).
func BenchmarkGroupFrame(b *testing.B) {
	const members = 1000
	msg := canal.Message{"type": "chat.message", "seq": int64(42), "ts": int64(1700000000000), "text": "hello, everyone"}
	build := func(m canal.Message) any {
		return map[string]any{"type": "group", "seq": m["seq"], "ts": m["ts"], "text": m["text"]}
	}
	b.Run("once", func(b *testing.B) {
		fm := &frameMemo{build: JSONFrame(build)}
		b.ReportAllocs()
		for range b.N {
			m := canal.Message{"type": msg["type"], "seq": msg["seq"], "ts": msg["ts"], "text": msg["text"]}
			for range members {
				if _, err := fm.frame(m); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("per-member", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			for range members {
				if _, err := json.Marshal(build(msg)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
