package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/presence"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

// Limits on what clients may send, and on startup.
const (
	maxChatMessage = 2000 // bytes of one chat message
	maxRoomName    = 64   // characters of a room slug, so "chat_<room>" is a valid group name
	maxHTTPBody    = 4096 // bytes of an HTTP request body: the server takes none
	connectTimeout = 5 * time.Second
)

// config is what main reads from flags and the environment.
type config struct {
	// RedisURL is the Redis where Django's django_canal writes tickets
	// (REALTIME_TICKET_REDIS) and whose channel layer Django's CHANNEL_LAYERS
	// names, e.g. redis://127.0.0.1:6379/0.
	RedisURL string
	// AllowedOrigins are the origins whose pages may open sockets: Django's, such as
	// http://127.0.0.1:8000. The browser sends the page's origin, not the socket's.
	AllowedOrigins []string
	// SessionURL is Django's session endpoint (django_canal's POST /session/, e.g.
	// http://127.0.0.1:8000/session/). When set, a browser that sends Django's session
	// cookie needs no ticket; SessionToken must then be Django's REALTIME_SESSION_TOKEN.
	SessionURL   string
	SessionToken string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Chat is the room consumer: Channels' tutorial chat for users Django vouched for,
// which also tells the page who is online in the room, live.
type Chat struct {
	who   presence.Store // where the consumer records the room's members (Options.Presence)
	group string
	user  canal.User
}

// Connect joins the room's group, accepts, greets the user by name and sends who is
// online: {"type": "online", "users": [{"id": "1", "username": "alice"}, ...]}, in the
// order they came. From then on "joined" and "left" frames keep the page's list current.
//
// The consumer also puts the socket in its user's group, "canal.user.<id>", by itself:
// django_canal.realtime.disconnect_user (the admin action, and the logout signal) sends
// {"type": "canal.disconnect", "code": 4403} there, which closes it.
func (ch *Chat) Connect(ctx context.Context, c *consumer.Conn) error {
	room := c.Scope().Route.String("room")
	if len(room) > maxRoomName {
		return canal.Reject(http.StatusNotFound, "room name too long")
	}
	ch.group = "chat_" + room
	ch.user = c.Scope().User // set by the ticket middleware
	if err := c.GroupAdd(ctx, ch.group); err != nil {
		return layerDown(err)
	}
	if err := c.Accept(); err != nil { // records the socket in the room's presence
		return err
	}
	if err := c.SendJSON(map[string]string{"type": "greeting", "text": "hello " + ch.user.Username}); err != nil {
		return err
	}
	entries, err := ch.who.Presence(ctx, ch.group)
	if err != nil {
		// Who is online is a nicety: the chat goes on without the list.
		return c.SendJSON(map[string]string{"type": "error", "text": "who is online is unknown for now"})
	}
	users := make([]onlineUser, len(entries))
	for i, e := range entries {
		users[i] = onlineUser{ID: e.ID, Username: e.Username}
	}
	return c.SendJSON(map[string]any{"type": "online", "users": users})
}

// onlineUser is one entry of the "online" frame.
type onlineUser struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// Joined handles presence.join, sent to the room when a user's first socket joins it:
// {"type": "joined", "id": "2", "username": "bob"}. The user's own arrival is in the
// "online" frame already.
func (ch *Chat) Joined(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	if m.String("id") == ch.user.ID {
		return nil
	}
	return c.SendJSON(map[string]string{"type": "joined", "id": m.String("id"), "username": m.String("username")})
}

// Left handles presence.leave, sent to the room when a user's last socket leaves it
// (closed, kicked or logged out): {"type": "left", "id": "2", "username": "bob"}.
func (ch *Chat) Left(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]string{"type": "left", "id": m.String("id"), "username": m.String("username")})
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
	err := c.GroupSend(ctx, ch.group, canal.Message{
		"type":    "chat.message",
		"message": in.Message,
		"user":    ch.user.Username,
	})
	if errors.Is(err, canal.ErrUnavailable) {
		// Redis is down: the room cannot be reached, but the socket can stay; the
		// layer reconnects by itself. Returning err would close it with 1011.
		return c.SendJSON(map[string]string{"type": "error", "text": "chat unavailable, try again in a moment"})
	}
	return err
}

// ChatMessage handles "chat.message" events from the room's group.
func (ch *Chat) ChatMessage(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]string{"type": "chat", "user": m.String("user"), "message": m.String("message")})
}

// Notify is the per-user notification consumer: every notification socket of a user is
// in the group "user_<id>", where Django's notifications arrive.
type Notify struct{}

// Connect joins the user's notification group and accepts.
func (*Notify) Connect(ctx context.Context, c *consumer.Conn) error {
	if err := joinUserGroup(ctx, c); err != nil {
		return err
	}
	return c.Accept()
}

// Notification handles "notify" events: {"type": "notify", "text": "..."}.
func (*Notify) Notification(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]string{"type": "notification", "text": m.String("text")})
}

// joinUserGroup puts the socket in the group "user_<id>", as Django names it
// (demo.views.user_group), where POST /notify/ sends {"type": "notify"} with plain
// Channels code. (Closing a user's sockets goes through "canal.user.<id>", which every
// consumer joins by itself; a {"type": "websocket.close"} sent to either group closes
// too, as in Channels.)
func joinUserGroup(ctx context.Context, c *consumer.Conn) error {
	group := "user_" + c.Scope().User.ID
	if err := layers.ValidGroupName(group); err != nil {
		// A primary key that cannot be in a group name (too long, odd characters):
		// refuse the socket rather than leave it out of reach of notifications.
		return canal.Reject(http.StatusForbidden, "user id not usable in a group name")
	}
	return layerDown(c.GroupAdd(ctx, group))
}

// layerDown turns a channel layer outage during the handshake into HTTP 503 (the
// ticket middleware's answer when Redis is down), rather than a 500.
func layerDown(err error) error {
	if errors.Is(err, canal.ErrUnavailable) {
		return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "channel layer unavailable", Err: err}
	}
	return err
}

// newApp builds the server: sockets under /ws/, authorized by Django's tickets, with
// a channel layer in the same Redis as Django's, through which Django reaches the
// sockets. It connects to Redis (and fails if it cannot). The returned close function
// releases the layer and the Redis client; call it after shutting down srv and app.
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
	// The channel layer: channels_redis' format, with its defaults (prefix "asgi",
	// capacity 100, expiry 60 s, group expiry 24 h), as Django's CHANNEL_LAYERS in
	// site_project/settings.py. Django's async_to_sync(get_channel_layer().group_send)
	// reaches these consumers; so do other Go processes on the same Redis.
	lctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	layer, err := layers.NewRedis(lctx, layers.RedisOptions{
		Hosts:  []string{cfg.RedisURL},
		Prefix: layers.DefaultRedisPrefix,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("channel layer: %w", err)
	}
	cleanups = append(cleanups, layer.Close)

	// Who is online: each chat socket is recorded in its room's presence, in the same
	// Redis (keys "canal:presence:chat_<room>"), where django_canal.realtime.presence
	// reads it for the page; PresenceEvents tells the room when a user comes and goes.
	pctx, pcancel := context.WithTimeout(context.Background(), connectTimeout)
	defer pcancel()
	who, err := presence.NewRedis(pctx, client, presence.RedisOptions{Logger: cfg.Logger})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("presence: %w", err)
	}
	cleanups = append(cleanups, who.Close) // before client.Close: it deletes its liveness key

	chat, err := consumer.New(func() *Chat { return &Chat{who: who} }, consumer.Options[*Chat]{
		Layer: layer,
		Events: map[string]consumer.EventFunc[*Chat]{
			"chat.message":              (*Chat).ChatMessage,
			consumer.EventPresenceJoin:  (*Chat).Joined,
			consumer.EventPresenceLeave: (*Chat).Left,
		},
		Presence:       who,
		PresenceEvents: true,
		Logger:         cfg.Logger,
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
	tickets, err := middleware.Ticket(store, middleware.TicketOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	stack := []canal.Middleware{origin}
	if cfg.SessionURL != "" {
		// Django's session cookie, as Channels' AuthMiddlewareStack reads it; the browser
		// sends it because Django and this server share the host name. Visitors without
		// a live session fall through to the ticket.
		verify, err := auth.Django(auth.DjangoOptions{URL: cfg.SessionURL, Token: cfg.SessionToken, Kind: "session"})
		if err != nil {
			return nil, nil, nil, err
		}
		session, err := middleware.Session(verify, middleware.SessionOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		stack = append(stack, session)
	}
	stack = append(stack, tickets)
	// Channels: AllowedHostsOriginValidator(AuthMiddlewareStack(TicketAuth(URLRouter(...)))).
	// Origins: Django's pages are on another origin than these sockets, so the server's
	// same-origin default must let them through too.
	srv, err = server.New(middleware.Stack(stack...)(routes), server.Options{Logger: cfg.Logger, Origins: cfg.AllowedOrigins})
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
	return app, srv, closeFn, nil
}

// redactURL hides a password in a Redis URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
