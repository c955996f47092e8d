package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

// Limits on what clients and Django may send.
const (
	maxChatMessage = 2000  // bytes of one chat message
	maxNotifyText  = 2000  // bytes of one notification
	maxHTTPBody    = 16384 // bytes of a POST /internal/notify body
	maxRoomName    = 64    // characters of a room slug, so "chat_<room>" is a valid group name
	notifyTimeout  = 2 * time.Second
)

// config is what main reads from flags and the environment.
type config struct {
	// RedisURL is the Redis where Django's django_canal writes tickets
	// (REALTIME_TICKET_REDIS), e.g. redis://127.0.0.1:6379/0.
	RedisURL string
	// AllowedOrigins are the origins whose pages may open sockets: Django's, such as
	// http://127.0.0.1:8000. The browser sends the page's origin, not the socket's.
	AllowedOrigins []string
	// NotifySecret guards POST /internal/notify (header X-Canal-Secret). Empty
	// disables the endpoint: every request gets 403.
	NotifySecret string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Chat is the room consumer: Channels' tutorial chat for users Django vouched for.
type Chat struct {
	group string
	user  canal.User
}

// Connect joins the room's group, accepts and greets the user by name.
func (ch *Chat) Connect(ctx context.Context, c *consumer.Conn) error {
	room := c.Scope().Route.String("room")
	if len(room) > maxRoomName {
		return canal.Reject(http.StatusNotFound, "room name too long")
	}
	ch.group = "chat_" + room
	ch.user = c.Scope().User // set by the ticket middleware
	if err := c.GroupAdd(ctx, ch.group); err != nil {
		return err
	}
	if err := c.Accept(); err != nil {
		return err
	}
	return c.SendJSON(map[string]string{"type": "greeting", "text": "hello " + ch.user.Username})
}

// ReceiveJSON relays {"message": "..."} to everyone in the room, with the sender's name.
func (ch *Chat) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var in struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(content, &in); err != nil || in.Message == "" {
		return c.SendJSON(map[string]string{"type": "error", "text": `send {"message": "..."}`})
	}
	if len(in.Message) > maxChatMessage {
		return c.SendJSON(map[string]string{"type": "error", "text": "message too long"})
	}
	return c.GroupSend(ctx, ch.group, canal.Message{
		"type":    "chat.message",
		"message": in.Message,
		"user":    ch.user.Username,
	})
}

// ChatMessage handles "chat.message" events from the room's group.
func (ch *Chat) ChatMessage(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]string{"type": "chat", "user": m.String("user"), "message": m.String("message")})
}

// Notify is the per-user notification consumer: every socket of a user is in the group
// "user_<id>", where Django's notifications arrive.
type Notify struct{}

// Connect joins the user's group and accepts.
func (*Notify) Connect(ctx context.Context, c *consumer.Conn) error {
	if err := c.GroupAdd(ctx, userGroup(c.Scope().User.ID)); err != nil {
		return err
	}
	return c.Accept()
}

// Notification handles "notify" events: {"type": "notify", "text": "..."}.
func (*Notify) Notification(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]string{"type": "notification", "text": m.String("text")})
}

// userGroup is the group of a Django user's sockets, as Django names it.
func userGroup(id string) string { return "user_" + id }

// newApp builds the server: sockets under /ws/, authorized by Django's tickets, and
// POST /internal/notify for Django. It connects to Redis (and fails if it cannot).
// The returned close function releases the layer and the Redis client; call it after
// shutting down srv and app.
func newApp(cfg config) (app *fiber.App, srv *server.Server, closeFn func(context.Context) error, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.AllowedOrigins) == 0 {
		return nil, nil, nil, errors.New("no allowed origins: the Django site's origin is needed, e.g. http://127.0.0.1:8000")
	}
	opt, err := rueidis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("redis URL: %w", err)
	}
	// Fail fast: a ticket check waits for Redis, and a browser waits for the ticket check.
	opt.Dialer = net.Dialer{Timeout: time.Second}
	opt.ConnWriteTimeout = 2 * time.Second
	opt.DisableCache = true // plain GETDEL; no client-side caching needed
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect to Redis at %s: %w", redactURL(cfg.RedisURL), err)
	}
	var cleanups []func(context.Context) error
	closeFn = func(ctx context.Context) error {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i](ctx))
		}
		return errors.Join(errs...)
	}
	cleanups = append(cleanups, func(context.Context) error { client.Close(); return nil })
	defer func() {
		if err != nil {
			_ = closeFn(context.Background())
		}
	}()

	// Tickets: the keys and values django_canal writes (sha256 of the ticket under
	// "canal:ticket:"), consumed with one GETDEL each.
	store, err := ticket.NewRedis(client, ticket.RedisOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	// In memory for now: one Go process holds every socket. When the Redis channel
	// layer lands this becomes layers.NewRedis(...) on the same Redis, and Django can
	// then reach the groups directly with channels' group_send (see
	// site/demo/views.py), without POST /internal/notify.
	layer, err := layers.NewMemory(layers.MemoryOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	cleanups = append(cleanups, layer.Close)

	chat, err := consumer.New(func() *Chat { return &Chat{} }, consumer.Options[*Chat]{
		Layer:  layer,
		Events: map[string]consumer.EventFunc[*Chat]{"chat.message": (*Chat).ChatMessage},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	notify, err := consumer.New(func() *Notify { return &Notify{} }, consumer.Options[*Notify]{
		Layer:  layer,
		Events: map[string]consumer.EventFunc[*Notify]{"notify": (*Notify).Notification},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	routes, err := router.New(
		router.Path("ws/chat/<slug:room>/", chat),
		router.Path("ws/notify/", notify),
	)
	if err != nil {
		return nil, nil, nil, err
	}
	origin, err := middleware.Origin(cfg.AllowedOrigins...)
	if err != nil {
		return nil, nil, nil, err
	}
	// All three transports: ?ticket=T, the "canal.ticket" subprotocol pair, or a
	// {"ticket": T} first frame. 403 for a bad ticket, 503 while Redis is down.
	auth, err := middleware.Ticket(store, middleware.TicketOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	// Channels: AllowedHostsOriginValidator(TicketAuth(URLRouter(...))).
	srv, err = server.New(middleware.Stack(origin, auth)(routes), server.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, nil, nil, err
	}

	app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		BodyLimit:             maxHTTPBody,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
	})
	srv.Mount(app, "/ws")
	app.Post("/internal/notify", notifyHandler(layer, cfg.NotifySecret, cfg.Logger))
	return app, srv, closeFn, nil
}

// notifyHandler serves POST /internal/notify for Django: with the shared secret in
// X-Canal-Secret and a body {"user_id": "42", "text": "..."}, it sends
// {"type": "notify", "text": ...} to the group "user_42".
func notifyHandler(layer canal.Layer, secret string, log *slog.Logger) fiber.Handler {
	// Compare digests, so that the comparison takes the same time whatever the
	// lengths of the two secrets.
	want := sha256.Sum256([]byte(secret))
	return func(c *fiber.Ctx) error {
		got := sha256.Sum256([]byte(c.Get("X-Canal-Secret")))
		if secret == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return c.Status(http.StatusForbidden).JSON(fiber.Map{"status": "error", "error": "forbidden"})
		}
		var in struct {
			UserID json.RawMessage `json:"user_id"`
			Text   string          `json:"text"`
		}
		if err := json.Unmarshal(c.Body(), &in); err != nil {
			return badRequest(c, "body must be JSON: {\"user_id\": \"42\", \"text\": \"...\"}")
		}
		id, ok := userID(in.UserID)
		if !ok {
			return badRequest(c, "user_id must be a non-empty string or an integer")
		}
		group := userGroup(id)
		if err := layers.ValidGroupName(group); err != nil {
			return badRequest(c, "user_id is not usable in a group name")
		}
		if in.Text == "" || len(in.Text) > maxNotifyText || !utf8.ValidString(in.Text) {
			return badRequest(c, fmt.Sprintf("text must be 1 to %d bytes of UTF-8", maxNotifyText))
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), notifyTimeout)
		defer cancel()
		if err := layer.GroupSend(ctx, group, canal.Message{"type": "notify", "text": in.Text}); err != nil {
			log.Warn("notify: group send failed", "group", group, "err", err)
			return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{"status": "error", "error": "channel layer unavailable"})
		}
		return c.JSON(fiber.Map{"status": "ok"})
	}
}

func badRequest(c *fiber.Ctx, msg string) error {
	return c.Status(http.StatusBadRequest).JSON(fiber.Map{"status": "error", "error": msg})
}

// userID reads a Django primary key sent as a string ("42", a UUID) or as an integer.
func userID(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s == "" {
			return "", false
		}
		return s, true
	}
	for i, b := range raw {
		if !('0' <= b && b <= '9' || b == '-' && i == 0 && len(raw) > 1) {
			return "", false
		}
	}
	return string(raw), true
}

// redactURL hides a password in a Redis URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
