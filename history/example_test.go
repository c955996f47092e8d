package history_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/history"
	"github.com/canal-rt/canal/layers"
)

// A client reconnects with the position of the last message it got and receives
// what it missed, then live messages, with no gap and no duplicate.
func Example() {
	ctx := context.Background()
	layer, _ := layers.NewMemory(layers.MemoryOptions{
		// With Redis: layers.RedisOptions{History: ...}, the same rules as Django's
		// REALTIME_HISTORY.
		History: []layers.HistoryRule{{Group: "chat_*", Size: 1000, TTL: 10 * time.Minute}},
	})
	defer layer.Close(ctx)

	// Messages published with history carry their position.
	first, _ := layer.Publish(ctx, "chat_lobby", canal.Message{"type": "chat.message", "text": "hello"})
	layer.GroupSend(ctx, "chat_lobby", canal.Message{"type": "chat.message", "text": "missed 1"})
	layer.GroupSend(ctx, "chat_lobby", canal.Message{"type": "chat.message", "text": "missed 2"})

	// The client comes back with first (its offset and epoch): subscribe, then catch up.
	out := make(chan canal.Message, 100) // the connection's queue
	rec := history.New("chat_lobby", first, 0, func(m canal.Message) bool {
		select {
		case out <- m:
			return true
		default:
			return false // full: read back from the history at the next Catchup
		}
	})
	gap := make(chan struct{}, 1) // the connection's goroutine runs rec.Catchup on it
	channel, detach, _ := layer.Attach(ctx, "specific.", func(m canal.Message) bool {
		if !rec.Live(m) {
			select {
			case gap <- struct{}{}:
			default:
			}
		}
		return true
	})
	defer detach()
	layer.GroupAdd(ctx, "chat_lobby", channel)
	if _, err := rec.Catchup(ctx, layer); errors.Is(err, canal.ErrNotRecovered) {
		fmt.Println("too late: reload the page's state")
	}
	layer.GroupSend(ctx, "chat_lobby", canal.Message{"type": "chat.message", "text": "live"})

	for range 3 {
		m := <-out
		_, pos, _ := canal.PositionOf(m)
		fmt.Println(pos.Offset, m["text"])
	}
	// Output:
	// 2 missed 1
	// 3 missed 2
	// 4 live
}
