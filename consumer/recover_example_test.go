package consumer_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
)

// A feed whose readers lose nothing across a reconnect: the layer keeps the history
// of the "feed_*" groups, and the consumer recovers them for clients that come back
// with their positions (canal.js does it).
func ExampleOptions_recover() {
	layer, err := layers.NewMemory(layers.MemoryOptions{
		History: []layers.HistoryRule{{Group: "feed_*", Size: 1000}},
	})
	if err != nil {
		panic(err)
	}
	defer layer.Close(context.Background())
	h, err := consumer.New(func() *feed { return &feed{} }, consumer.Options[*feed]{
		Layer:   layer,
		Groups:  []string{"feed_news"},
		Recover: []string{"feed_*"},
		Frames: map[string]consumer.FrameFunc{
			"feed.item": consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"text": m["text"]} }),
		},
	})
	if err != nil {
		panic(err)
	}
	_ = h // mount it: server.New(router.Path("ws/feed/", h), ...)

	// Publish (or Django's django_canal.history.publish) gives each message its
	// position; GroupSend to the group does the same.
	p, err := layer.Publish(context.Background(), "feed_news", canal.Message{"type": "feed.item", "text": "hello"})
	fmt.Println(p.Offset, err)
	// Output: 1 <nil>
}
