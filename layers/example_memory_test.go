package layers_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/layers"
)

// A chat room: one connection attached to the layer (no goroutine of its own) and
// one worker reading a named channel with Receive both get a group message.
func ExampleNewMemory() {
	ctx := context.Background()
	layer, err := layers.NewMemory(layers.MemoryOptions{}) // Channels' defaults
	if err != nil {
		panic(err)
	}
	defer layer.Close(ctx)

	// A connection's inbox: deliver must not block, so it reports a full inbox.
	inbox := make(chan canal.Message, 16)
	conn, detach, err := layer.Attach(ctx, "", func(m canal.Message) bool {
		select {
		case inbox <- m:
			return true
		default:
			return false
		}
	})
	if err != nil {
		panic(err)
	}
	defer detach()

	layer.GroupAdd(ctx, "chat_lobby", conn)
	layer.GroupAdd(ctx, "chat_lobby", "chat.archive") // a worker channel
	layer.GroupSend(ctx, "chat_lobby", canal.Message{"type": "chat.message", "text": "hello"})

	m := <-inbox
	fmt.Println("connection:", m.Type(), m.String("text"))
	m, err = layer.Receive(ctx, "chat.archive")
	if err != nil {
		panic(err)
	}
	fmt.Println("worker:", m.Type(), m.String("text"))
	// Output:
	// connection: chat.message hello
	// worker: chat.message hello
}

// Send reports a full channel; the capacity can differ per channel-name pattern.
func ExampleMemory_Send() {
	ctx := context.Background()
	layer, _ := layers.NewMemory(layers.MemoryOptions{
		Capacity:        100,
		ChannelCapacity: []layers.Capacity{{Pattern: "thumbnails*", Size: 2}},
	})
	defer layer.Close(ctx)

	for i := range 3 {
		err := layer.Send(ctx, "thumbnails", canal.Message{"type": "thumbnail.make", "id": i})
		fmt.Println(i, err == nil, errors.Is(err, canal.ErrChannelFull))
	}
	// Output:
	// 0 true false
	// 1 true false
	// 2 false true
}
