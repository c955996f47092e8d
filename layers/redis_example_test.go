package layers_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/layers"
)

// A Go consumer in the same group as Django's: with Django's CHANNEL_LAYERS
//
//	{"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
//	             "CONFIG": {"hosts": ["redis://localhost:6379/0"]}}}
//
// async_to_sync(get_channel_layer().group_send)("room", {"type": "chat.message", ...})
// in a Django view reaches deliver below, and layer.GroupSend reaches Django's consumers.
func ExampleNewRedis() {
	ctx := context.Background()
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{
		Hosts: []string{"redis://localhost:6379/0"}, // Django's "hosts", in the same order
	})
	if err != nil {
		fmt.Println("Redis unavailable:", err)
		return
	}
	defer layer.Close(ctx)

	inbox := make(chan canal.Message, 64)
	conn, detach, err := layer.Attach(ctx, "", func(m canal.Message) bool {
		select {
		case inbox <- m:
			return true
		default:
			return false // full: the layer drops the message and counts it
		}
	})
	if err != nil {
		panic(err)
	}
	defer detach()
	if err := layer.GroupAdd(ctx, "room", conn); err != nil {
		panic(err)
	}
	defer layer.GroupDiscard(ctx, "room", conn)

	// To Django's consumers and this one alike.
	if err := layer.GroupSend(ctx, "room", canal.Message{"type": "chat.message", "text": "hello"}); err != nil {
		panic(err)
	}
	fmt.Println((<-inbox).String("text"))
}
