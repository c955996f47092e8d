package main

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
)

//go:embed static
var static embed.FS

// Chat is Channels' tutorial consumer: one per connection, in the room's group.
type Chat struct {
	group string
}

// Connect joins the room's group and accepts.
func (ch *Chat) Connect(ctx context.Context, c *consumer.Conn) error {
	ch.group = "chat_" + c.Scope().Route.String("room")
	if err := c.GroupAdd(ctx, ch.group); err != nil {
		return err
	}
	return c.Accept()
}

// ReceiveJSON relays {"message": "..."} to everyone in the room.
func (ch *Chat) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var in struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(content, &in); err != nil || in.Message == "" {
		return c.SendJSON(map[string]string{"error": `send {"message": "..."}`})
	}
	return c.GroupSend(ctx, ch.group, canal.Message{
		"type":    "chat.message",
		"message": in.Message,
		"user":    displayName(c.Scope().User),
	})
}

// ChatMessage handles "chat.message" events from the group.
func (ch *Chat) ChatMessage(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"message": m["message"], "user": m["user"]})
}

func displayName(u canal.User) string {
	if u.Authenticated() {
		return u.Username
	}
	return "anonymous"
}

// config is what main reads from flags.
type config struct {
	// AllowedHosts are the hosts whose pages may open sockets (Django's ALLOWED_HOSTS).
	AllowedHosts []string
}

// newApp builds the demo: the page at /, sockets at /ws/chat/<room>/.
func newApp(cfg config) (*fiber.App, *server.Server, canal.Layer, error) {
	layer, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	chat, err := consumer.New(func() *Chat { return &Chat{} }, consumer.Options[*Chat]{
		Layer:  layer,
		Events: map[string]consumer.EventFunc[*Chat]{"chat.message": (*Chat).ChatMessage},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	origin, err := middleware.AllowedHosts(cfg.AllowedHosts, false)
	if err != nil {
		return nil, nil, nil, err
	}
	routes, err := router.New(
		router.Path("ws/chat/<slug:room>/", chat),
	)
	if err != nil {
		return nil, nil, nil, err
	}
	srv, err := server.New(canal.Chain{origin}.Then(routes), server.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/ws")
	app.Get("/", func(c *fiber.Ctx) error {
		page, err := static.ReadFile("static/index.html")
		if err != nil {
			return fmt.Errorf("chat: %w", err)
		}
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		return c.Send(page)
	})
	return app, srv, layer, nil
}
