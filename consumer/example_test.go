package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"

	"github.com/gofiber/fiber/v2"
)

// Chat is Channels' tutorial consumer in Canal. The README shows this code.
type Chat struct{ group string }

func (ch *Chat) Connect(ctx context.Context, c *consumer.Conn) error {
	ch.group = "chat_" + c.Scope().Route.String("room")
	if err := c.GroupAdd(ctx, ch.group); err != nil { // left automatically at disconnect
		return err
	}
	return c.Accept()
}

func (ch *Chat) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var in struct{ Message string }
	if err := json.Unmarshal(content, &in); err != nil {
		return err
	}
	return c.GroupSend(ctx, ch.group, canal.Message{"type": "chat.message", "message": in.Message})
}

func (ch *Chat) ChatMessage(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"message": m["message"]})
}

// Example mounts the chat consumer and talks to it with two clients in one room.
func Example() {
	layer, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		panic(err)
	}
	chat, err := consumer.New(func() *Chat { return &Chat{} }, consumer.Options[*Chat]{
		Layer:  layer,
		Events: map[string]consumer.EventFunc[*Chat]{"chat.message": (*Chat).ChatMessage},
	})
	if err != nil {
		panic(err)
	}
	routes := router.Must(router.Path("ws/chat/<slug:room>/", chat))

	srv, err := server.New(routes, server.Options{})
	if err != nil {
		panic(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = app.Listener(ln) }()
	url := "ws://" + ln.Addr().String() + "/ws/chat/lobby/"
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = app.ShutdownWithContext(ctx)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	alice, err := canaltest.Dial(ctx, url, canaltest.DialOptions{})
	if err != nil {
		panic(err)
	}
	bob, err := canaltest.Dial(ctx, url, canaltest.DialOptions{})
	if err != nil {
		panic(err)
	}
	_ = alice.SendJSON(map[string]string{"message": "hello"})
	var got map[string]any
	_ = bob.ReceiveJSON(ctx, &got)
	fmt.Println("bob got:", got["message"])
	_ = alice.Close(1000)
	_ = bob.Close(1000)
	// Output: bob got: hello
}
