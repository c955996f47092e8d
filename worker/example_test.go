package worker_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/worker"
)

// A thumbnail worker: Django's
//
//	async_to_sync(channel_layer.send)("thumbnails", {"type": "thumbnail.make", "id": 7, "reply_channel": ch})
//
// runs makeThumbnail, whose answer reaches ch. With Django, the layer is
// layers.NewRedis with the hosts and prefix of Django's CHANNEL_LAYERS; here it
// is in memory, and this program plays Django's part too.
func Example() {
	ctx := context.Background()
	layer, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		panic(err)
	}
	defer layer.Close(ctx)

	makeThumbnail := func(ctx context.Context, m canal.Message) error {
		url := fmt.Sprintf("/thumbs/%v.jpg", m["id"])
		return worker.Reply(ctx, layer, m, canal.Message{"type": "thumbnail.done", "id": m["id"], "url": url})
	}
	w, err := worker.New(layer, worker.Channels{
		"thumbnails": worker.Types{"thumbnail.make": makeThumbnail},
	}, worker.Options{Concurrency: 4})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()

	// Django's side: a reply channel, the request, the answer.
	ch, _ := layer.NewChannel(ctx, "")
	layer.Send(ctx, "thumbnails", canal.Message{"type": "thumbnail.make", "id": 7, "reply_channel": ch})
	reply, _ := layer.Receive(ctx, ch)
	fmt.Println(reply.Type(), reply["id"], reply["url"])

	stop() // stops receiving, lets running handlers finish (DrainTimeout)
	fmt.Println("run:", <-done)
	fmt.Printf("%+v\n", w.Stats())
	// Output:
	// thumbnail.done 7 /thumbs/7.jpg
	// run: <nil>
	// {Received:1 Handled:1 Failed:0 Panics:0 Unhandled:0 ReceiveErrors:0 InFlight:0}
}
