package main

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/presence"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

//go:embed static
var static embed.FS

// Chat is Channels' tutorial consumer: one per connection, in the room's group. It
// also tells the page who is online in the room, live.
type Chat struct {
	who   presence.Store
	group string
}

// Connect joins the room's group, accepts, and sends who is online: {"online":
// ["alice", "bob"]}. From then on, presence.join and presence.leave events keep the
// page's list current.
func (ch *Chat) Connect(ctx context.Context, c *consumer.Conn) error {
	ch.group = "chat_" + c.Scope().Route.String("room")
	if err := c.GroupAdd(ctx, ch.group); err != nil {
		return err
	}
	if err := c.Accept(); err != nil { // enters the room's presence
		return err
	}
	online, err := ch.who.Presence(ctx, ch.group)
	if err != nil {
		// Presence is a nicety: the chat goes on without the list.
		return c.SendJSON(map[string]string{"error": "who is online is unknown for now"})
	}
	names := make([]string, len(online))
	for i, e := range online {
		names[i] = e.Username
	}
	return c.SendJSON(map[string]any{"online": names})
}

// Joined and Left forward a user's arrival (first tab) and departure (last tab).
func (ch *Chat) Joined(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"joined": m["username"]})
}

func (ch *Chat) Left(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"left": m["username"]})
}

// ReceiveJSON relays {"message": "..."} to everyone in the room.
func (ch *Chat) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var in struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(content, &in); err != nil || in.Message == "" {
		return c.SendJSON(map[string]string{"error": `send {"message": "..."}`})
	}
	err := c.GroupSend(ctx, ch.group, canal.Message{
		"type":    "chat.message",
		"message": in.Message,
		"user":    displayName(c.Scope().User),
	})
	if errors.Is(err, canal.ErrUnavailable) {
		// Redis is down: tell this client and keep its socket, rather than closing it
		// with 1011. The layer reconnects by itself.
		return c.SendJSON(map[string]string{"error": "the room is unreachable for now; try again in a moment"})
	}
	return err
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
	// RedisURL, when set, keeps the tickets and the channel layer in Redis, so that
	// several chat processes on one Redis share their rooms.
	RedisURL string
	// Layer is the channel layer: "core" (layers.NewRedis, channels_redis'
	// RedisChannelLayer format), "pubsub" (layers.NewRedisPubSub, its
	// RedisPubSubChannelLayer) or "memory" (this process only). Empty means "core"
	// with a RedisURL and "memory" without.
	Layer string
	// Logger receives the server's and the layer's logs (default slog.Default()).
	Logger *slog.Logger
	// AdminToken, when set, enables POST /admin/kick {"name": "..."} for requests
	// with "Authorization: Bearer <AdminToken>": it closes every socket of that user
	// in every process (4403), as Django's django_canal.realtime.disconnect_user does.
	AdminToken string
}

// Channel layer backends for config.Layer.
const (
	layerCore   = "core"
	layerPubSub = "pubsub"
	layerMemory = "memory"
)

// layerTimeout bounds connecting the layer to Redis at startup.
const layerTimeout = 5 * time.Second

// ticketTTL is how long a sign-in ticket may wait before the socket uses it.
const ticketTTL = 10 * time.Second

// issueTimeout bounds the sign-in's ticket write, so a stalled Redis answers 503
// instead of holding the request.
const issueTimeout = 2 * time.Second

var validName = regexp.MustCompile(`^[\p{L}\p{N}_.-]{1,32}$`)

// app is the running demo: the Fiber app, the Canal server and what they hold.
type app struct {
	fiber  *fiber.App
	srv    *server.Server
	layer  canal.Layer
	closer func()
}

// Close stops the sockets (1001), then the HTTP server, then the layer and Redis.
func (a *app) Close(ctx context.Context) {
	_ = a.srv.Shutdown(ctx)
	_ = a.fiber.ShutdownWithContext(ctx)
	_ = a.layer.Close(ctx)
	a.closer()
}

// kickReason is what a kicked user's page shows.
const kickReason = "kicked by an admin"

// newApp builds the demo: the page at /, sign-in at /signin, sockets at /ws/chat/<room>/.
func newApp(cfg config) (a *app, err error) {
	layer, err := newLayer(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = layer.Close(context.Background())
		}
	}()
	store, closeTickets, err := newTicketStore(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	who, closePresence, err := newPresence(cfg.RedisURL, cfg.Logger)
	if err != nil {
		closeTickets()
		return nil, err
	}
	closer := func() { closePresence(); closeTickets() }
	defer func() {
		if err != nil {
			closer()
		}
	}()
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
		return nil, err
	}
	origin, err := middleware.AllowedHosts(cfg.AllowedHosts, false)
	if err != nil {
		return nil, err
	}
	// The page sends its ticket in Sec-WebSocket-Protocol; refusing sockets without one
	// before the upgrade keeps unauthenticated clients from holding sockets open.
	auth, err := middleware.Ticket(store, middleware.TicketOptions{
		Transports: middleware.TransportSubprotocol | middleware.TransportQuery,
	})
	if err != nil {
		return nil, err
	}
	routes, err := router.New(
		router.Path("ws/chat/<slug:room>/", chat),
	)
	if err != nil {
		return nil, err
	}
	// Origins: the server's own origin check lets the same hosts through as the
	// AllowedHosts middleware (any port), so a page on another port can still chat.
	srv, err := server.New(canal.Chain{origin, auth}.Then(routes), server.Options{Logger: cfg.Logger, Origins: cfg.AllowedHosts})
	if err != nil {
		return nil, err
	}
	f := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(f, "/ws")
	f.Get("/", func(c *fiber.Ctx) error {
		page, err := static.ReadFile("static/index.html")
		if err != nil {
			return fmt.Errorf("chat: %w", err)
		}
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		return c.Send(page)
	})
	// The demo's sign-in: a name, no password. A real site signs users in with Django
	// and issues the ticket there (see examples/django); the socket side is the same.
	f.Post("/signin", func(c *fiber.Ctx) error {
		var in struct {
			Name string `json:"name"`
		}
		if err := c.BodyParser(&in); err != nil || !validName.MatchString(in.Name) {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "name: 1-32 letters, digits, _ . -"})
		}
		// Not c.Context(): fasthttp's RequestCtx is a context.Context whose Done races
		// with app shutdown once a library derives a child context from it.
		ctx, cancel := context.WithTimeout(c.UserContext(), issueTimeout)
		defer cancel()
		t, err := store.Issue(ctx, canal.User{ID: in.Name, Username: in.Name}, ticketTTL)
		if err != nil {
			return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": "ticket store unavailable"})
		}
		return c.JSON(fiber.Map{"ticket": t, "expires_in": int(ticketTTL.Seconds())})
	})
	if cfg.AdminToken != "" {
		f.Post("/admin/kick", func(c *fiber.Ctx) error { return kick(c, layer, cfg.AdminToken) })
	}
	return &app{fiber: f, srv: srv, layer: layer, closer: closer}, nil
}

// kick serves POST /admin/kick: what a Django admin action does with
// django_canal.realtime.disconnect_user, the Go way.
func kick(c *fiber.Ctx, layer canal.Layer, token string) error {
	got := []byte(c.Get(fiber.HeaderAuthorization))
	if subtle.ConstantTimeCompare(got, []byte("Bearer "+token)) != 1 {
		return c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": "admin token required"})
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := c.BodyParser(&in); err != nil || !validName.MatchString(in.Name) {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "name: 1-32 letters, digits, _ . -"})
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), issueTimeout)
	defer cancel()
	// The demo's user ID is the name it signed in with.
	if err := consumer.DisconnectUser(ctx, layer, in.Name, consumer.DefaultDisconnectCode, kickReason); err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"error": "channel layer unavailable"})
	}
	return c.JSON(fiber.Map{"kicked": in.Name})
}

// newPresence keeps who is online in memory, or in Redis (shared by every chat
// process on it) when a URL is given.
func newPresence(redisURL string, logger *slog.Logger) (presence.Store, func(), error) {
	if redisURL == "" {
		return presence.NewMemory(presence.Options{}), func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), layerTimeout)
	defer cancel()
	client, _, err := redisconn.DialURL(ctx, redisURL, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("chat: presence: %w", err)
	}
	who, err := presence.NewRedis(ctx, client, presence.RedisOptions{Logger: logger})
	if err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("chat: %w", err)
	}
	return who, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = who.Close(ctx)
		client.Close()
	}, nil
}

// newLayer makes the channel layer cfg asks for. With Redis, every chat process on
// the same Redis (and prefix, "asgi" by default, as Django's) shares the rooms: a
// message sent to a room's group reaches its members in all of them.
func newLayer(cfg config) (canal.Layer, error) {
	kind := cfg.Layer
	if kind == "" {
		kind = layerMemory
		if cfg.RedisURL != "" {
			kind = layerCore
		}
	}
	if kind != layerMemory && cfg.RedisURL == "" {
		return nil, fmt.Errorf("chat: the %s channel layer needs a Redis URL (-redis)", kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), layerTimeout)
	defer cancel()
	switch kind {
	case layerMemory:
		return layers.NewMemory(layers.MemoryOptions{})
	case layerCore:
		return layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{cfg.RedisURL}, Logger: cfg.Logger})
	case layerPubSub:
		return layers.NewRedisPubSub(ctx, layers.RedisPubSubOptions{Hosts: []string{cfg.RedisURL}, Logger: cfg.Logger})
	}
	return nil, fmt.Errorf("chat: unknown channel layer %q (want %s, %s or %s)", kind, layerCore, layerPubSub, layerMemory)
}

// newTicketStore keeps tickets in memory, or in Redis when a URL is given: the same
// URL the channel layer's Hosts take.
func newTicketStore(redisURL string) (ticket.Store, func(), error) {
	if redisURL == "" {
		return ticket.NewMemory(ticket.MemoryOptions{}), func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), layerTimeout)
	defer cancel()
	store, err := ticket.DialRedis(ctx, redisURL, ticket.RedisOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("chat: %w", err)
	}
	return store, store.Close, nil
}
