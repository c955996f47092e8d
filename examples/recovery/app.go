package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/client"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

// config is what one Canal process of the example needs.
type config struct {
	RedisURL string   // the Redis Django publishes to and issues tickets in
	Origins  []string // the Django site's origin: its pages open the sockets
	Logger   *slog.Logger
}

// History shared with Django's REALTIME_HISTORY (site/feedsite/settings.py): the
// feeds keep their last 1,000 messages, the short feeds 10 (to show a client that
// was away too long being told so).
var historyRules = []layers.HistoryRule{
	{Group: "feed_*", Size: 1000},
	{Group: "short_*", Size: 10},
}

// reader serves /ws/feed/<group>/: it joins the group named in the path and sends
// each "feed.item" to the page. Options.Recover does the rest: positions on every
// frame, catch-up after a reconnect. A page may post to the feed: {"text": "..."}.
type reader struct{ group string }

// maxPost bounds a posted text, in bytes.
const maxPost = 500

func (r *reader) Connect(ctx context.Context, c *consumer.Conn) error {
	g := c.Scope().Route.String("group")
	if !strings.HasPrefix(g, "feed_") && !strings.HasPrefix(g, "short_") {
		return canal.Reject(404, "no such feed")
	}
	if err := c.GroupAdd(ctx, g); err != nil {
		return err
	}
	r.group = g
	return c.Accept()
}

// ReceiveJSON publishes a page's post to the feed, with history like Django's items.
func (r *reader) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var in struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(content, &in); err != nil || in.Text == "" || len(in.Text) > maxPost {
		return c.SendJSON(map[string]any{"error": fmt.Sprintf("send {\"text\": 1 to %d bytes}", maxPost)})
	}
	_, err := c.Layer().(canal.HistoryLayer).Publish(ctx, r.group, canal.Message{
		"type": "feed.item", "text": in.Text, "by": c.User().Username})
	return err
}

// app is one Canal process: the Fiber app, the Canal server on it, and what to close.
type app struct {
	fiber *fiber.App
	srv   *server.Server
	close func()
}

func newApp(ctx context.Context, cfg config) (*app, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{cfg.RedisURL}, History: historyRules, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	rdb, _, err := redisconn.DialURL(ctx, cfg.RedisURL, nil)
	if err != nil {
		layer.Close(context.Background())
		return nil, err
	}
	closeAll := func() { rdb.Close(); layer.Close(context.Background()) }
	fail := func(err error) (*app, error) { closeAll(); return nil, err }
	store, err := ticket.NewRedis(rdb, ticket.RedisOptions{}) // Django's django_canal issues them
	if err != nil {
		return fail(err)
	}
	feed, err := consumer.New(func() *reader { return &reader{} }, consumer.Options[*reader]{
		Layer:   layer,
		Recover: []string{"feed_*", "short_*"},
		Frames: map[string]consumer.FrameFunc{
			"feed.item": consumer.JSONFrame(func(m canal.Message) any {
				return map[string]any{"n": m["n"], "text": m["text"], "by": m["by"]}
			}),
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return fail(err)
	}
	// The ticket arrives in Sec-WebSocket-Protocol (WebSocket) or ?ticket= (an event
	// stream, which cannot set headers); canal.js chooses.
	auth, err := middleware.Ticket(store, middleware.TicketOptions{
		Transports: middleware.TransportSubprotocol | middleware.TransportQuery,
	})
	if err != nil {
		return fail(err)
	}
	routes, err := router.New(router.Path("ws/feed/<slug:group>/", feed))
	if err != nil {
		return fail(err)
	}
	srv, err := server.New(canal.Chain{auth}.Then(routes), server.Options{
		Logger: cfg.Logger, Origins: cfg.Origins, EventStreams: true,
	})
	if err != nil {
		return fail(err)
	}
	f := fiber.New(fiber.Config{DisableStartupMessage: true})
	f.Get("/canal.js", adaptor.HTTPHandler(client.Handler()))
	srv.Mount(f, "/ws")
	return &app{fiber: f, srv: srv, close: closeAll}, nil
}

// shutdown drains the Canal server, then the Fiber app, then the layer.
func (a *app) shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	err = errors.Join(err, a.fiber.ShutdownWithContext(ctx))
	a.close()
	if err != nil {
		return fmt.Errorf("recovery: shutdown: %w", err)
	}
	return nil
}
