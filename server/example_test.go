package server_test

import (
	"context"
	"fmt"
	"net"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

// With EventStreams, the consumer that serves WebSockets also serves browsers'
// EventSource: group messages reach both.
func ExampleOptions_eventStreams() {
	ctx := context.Background()
	layer, _ := layers.NewMemory(layers.MemoryOptions{})
	defer layer.Close(ctx)
	news, _ := consumer.New(func() struct{} { return struct{}{} }, consumer.Options[struct{}]{
		Layer:  layer,
		Groups: []string{"news"},
		Frames: map[string]consumer.FrameFunc{
			"news.item": consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"title": m["title"]} }),
		},
	})
	srv, _ := server.New(news, server.Options{EventStreams: true})
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go app.Listener(ln)
	defer app.Shutdown()
	defer srv.Shutdown(ctx)

	// In a page: new EventSource("/news/").onmessage = e => show(JSON.parse(e.data))
	stream, err := canaltest.DialEvents(ctx, "http://"+ln.Addr().String()+"/news/", canaltest.DialOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stream.Close()
	_ = layer.GroupSend(ctx, "news", canal.Message{"type": "news.item", "title": "Canal 0.2"})
	ev, _ := stream.Next(ctx)
	fmt.Println(ev.Data)
	// Output: {"title":"Canal 0.2"}
}
