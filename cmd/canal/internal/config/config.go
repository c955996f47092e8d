package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/canal-rt/canal/cmd/canal/internal/expr"
)

// Config is a canal configuration file, as decoded and checked by [Load]. Field
// comments give the TOML key; see doc.go for the file's reference.
type Config struct {
	Listen          string   `toml:"listen"`           // CANAL_LISTEN; default "127.0.0.1:8001"
	Origins         []string `toml:"origins"`          // server.Options.Origins
	ShutdownTimeout Duration `toml:"shutdown_timeout"` // default 25s
	Server          Server   `toml:"server"`
	Log             Log      `toml:"log"`
	Admin           Admin    `toml:"admin"`
	Redis           Redis    `toml:"redis"`
	Layer           Layer    `toml:"layer"`
	Auth            Auth     `toml:"auth"`
	Django          Django   `toml:"django"`
	Bus             []Bus    `toml:"bus"`
	Routes          []Route  `toml:"route"`

	// Secrets, from the environment only (never from the file).
	SessionToken  string   `toml:"-"` // CANAL_SESSION_TOKEN
	DjangoToken   string   `toml:"-"` // CANAL_DJANGO_TOKEN
	LayerKeys     []string `toml:"-"` // CANAL_LAYER_SYMMETRIC_ENCRYPTION_KEYS, comma-separated
	JWTKey        string   `toml:"-"` // CANAL_JWT_SIGNING_KEY
	SigningKey    string   `toml:"-"` // CANAL_SIGNING_KEY
	SigningOldKey []string `toml:"-"` // CANAL_SIGNING_KEY_FALLBACKS, comma-separated
}

// Server holds the server.Options a deployment tunes.
type Server struct {
	MaxConnections   int      `toml:"max_connections"`
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	ReadLimit        int64    `toml:"read_limit"`
	EventStreams     bool     `toml:"event_streams"`
	SessionWorkers   int      `toml:"session_workers"`
	PingInterval     Duration `toml:"ping_interval"`
	// SocketSendBuffer is server.Options.SocketSendBuffer in bytes; -1 leaves the
	// kernel's autotuning.
	SocketSendBuffer int `toml:"socket_send_buffer"`
	// ClientJS serves canal.js at GET /canal.js on the socket listener; default true.
	ClientJS *bool `toml:"client_js"`
}

// Log configures log/slog.
type Log struct {
	Level  string `toml:"level"`  // CANAL_LOG_LEVEL: debug, info (default), warn, error
	Format string `toml:"format"` // CANAL_LOG_FORMAT: text (default) or json
}

// Admin is the separate listener for /healthz, /readyz and /metrics.
type Admin struct {
	Listen string `toml:"listen"` // CANAL_ADMIN_LISTEN; "" turns it off
}

// Redis is the Redis that tickets, the bus and (by default) the layer use.
type Redis struct {
	URL string `toml:"url"` // CANAL_REDIS_URL
}

// Layer is the channel layer, as Django's CHANNEL_LAYERS["default"].
type Layer struct {
	Backend  string   `toml:"backend"` // redis (channels_redis core), pubsub, memory
	Hosts    []string `toml:"hosts"`   // default [redis.url]
	Prefix   string   `toml:"prefix"`  // default "asgi"
	Capacity int      `toml:"capacity"`
	// ReceiveBuffer is layers.RedisOptions.ReceiveBuffer in bytes (backend redis).
	ReceiveBuffer int `toml:"receive_buffer"`
	// History lists the [[layer.history]] rules: which groups keep a history that
	// clients recover from (layers.HistoryRule; the first match wins).
	History []HistoryRule `toml:"history"`

	hostsFromRedis bool
}

// HistoryRule is one [[layer.history]]: the groups matching Group (a path.Match glob)
// keep their last Size messages, none older than TTL, so that a client that
// reconnects with its last position gets what it missed. Django's REALTIME_HISTORY
// must list the same rules (its ttl in seconds).
type HistoryRule struct {
	Group string    `toml:"group"`
	Size  int       `toml:"size"` // 0: layers.DefaultHistorySize (100); at most layers.MaxHistorySize
	TTL   *Duration `toml:"ttl"`  // nil: layers.DefaultHistoryTTL (5m); else positive
}

// Auth lists the credential kinds routes may use; a kind is on when its table is present.
type Auth struct {
	Ticket  *TicketAuth  `toml:"ticket"`
	Session *SessionAuth `toml:"session"`
	Token   TokenAuth    `toml:"token"` // how token kinds travel
	JWT     *JWTAuth     `toml:"jwt"`
	Signed  *SignedAuth  `toml:"signed"`
	Django  *DjangoAuth  `toml:"django"`
}

// TokenAuth: how the token kinds (jwt, signed, django's) travel; they share one
// middleware per route.
type TokenAuth struct {
	Transports  []string `toml:"transports"`  // default all three (query and subprotocol on anonymous routes)
	Param       string   `toml:"param"`       // default "token"
	Subprotocol string   `toml:"subprotocol"` // default "canal.token"

	defaulted bool
}

// JWTAuth: djangorestframework-simplejwt access tokens, checked in canal with the
// key (CANAL_JWT_SIGNING_KEY for HS*, verifying_key for the others).
type JWTAuth struct {
	Algorithm     string   `toml:"algorithm"`
	VerifyingKey  string   `toml:"verifying_key"` // PEM: public, so it may be in the file
	Audience      string   `toml:"audience"`
	Issuer        string   `toml:"issuer"`
	Leeway        Duration `toml:"leeway"`
	UserIDClaim   string   `toml:"user_id_claim"`
	UsernameClaim string   `toml:"username_claim"`
	TokenTypes    []string `toml:"token_types"`
}

// SignedAuth: django.core.signing tokens (signing.dumps({"user_id": ...})), checked
// with CANAL_SIGNING_KEY (Django's SECRET_KEY).
type SignedAuth struct {
	Salt        string   `toml:"salt"`
	MaxAge      Duration `toml:"max_age"` // required
	Algorithm   string   `toml:"algorithm"`
	UserIDKey   string   `toml:"user_id_key"`
	UsernameKey string   `toml:"username_key"`
}

// DjangoAuth: credential kinds Django checks itself at django_canal's /auth/
// endpoint (REALTIME_AUTH_KINDS: drf, sesame, simplejwt, ...), with
// CANAL_SESSION_TOKEN; each kind becomes a credential kind routes may name.
type DjangoAuth struct {
	URL   string   `toml:"url"`
	Kinds []string `toml:"kinds"`
	Cache Duration `toml:"cache"` // reuse a user this long (auth.Cache); 0: ask every time
}

// TicketAuth: django_canal's single-use tickets, in Redis.
type TicketAuth struct {
	Transports []string `toml:"transports"` // subprotocol, query, first_message; default all
	Prefix     string   `toml:"prefix"`     // REALTIME_TICKET_PREFIX; default "canal:ticket:"
}

// SessionAuth: Django's session cookie, checked by django_canal's session endpoint.
type SessionAuth struct {
	URL    string `toml:"url"`    // e.g. http://127.0.0.1:8000/session/; token: CANAL_SESSION_TOKEN
	Cookie string `toml:"cookie"` // SESSION_COOKIE_NAME; default "sessionid"
}

// Django configures canal's calls to Django URLs (authorize, receive mode "django").
type Django struct {
	Timeout Duration `toml:"timeout"` // default 5s; token: CANAL_DJANGO_TOKEN
}

// Bus is a raw Redis Pub/Sub channel of JSON objects, each delivered to the sockets of
// one group as published.
type Bus struct {
	Channel string `toml:"channel"`
	Group   string `toml:"group"` // template over the message's fields
	Redis   string `toml:"redis"` // default redis.url

	GroupTemplate *expr.Template `toml:"-"`
}

// Route maps a path to what its sockets join, who may connect and what their
// messages do.
type Route struct {
	Path      string   `toml:"path"`  // Django path() syntax
	Regex     string   `toml:"regex"` // or re_path() syntax
	Auth      []string `toml:"auth"`  // credential kinds, in order; default every configured kind
	Anonymous bool     `toml:"anonymous"`
	Require   []string `toml:"require"`
	Authorize string   `toml:"authorize"`
	Groups    []string `toml:"groups"`
	MaxGroups int      `toml:"max_groups"` // default 256
	Events    []string `toml:"events"`
	Receive   Receive  `toml:"receive"`
	// Recover lists globs of this route's groups that a client coming back with its
	// positions (canal.js does) recovers: consumer.Options.Recover. Each must be
	// covered by a [[layer.history]] rule.
	Recover []string `toml:"recover"`

	GroupTemplates []*expr.Template  `toml:"-"`
	Predicates     []*expr.Predicate `toml:"-"`
	RouteNames     []string          `toml:"-"`
}

// Receive says what a client message does.
type Receive struct {
	Mode    string `toml:"mode"`    // refuse (default), group, worker, django
	Group   string `toml:"group"`   // group mode: template
	Type    string `toml:"type"`    // group and worker modes: the message type
	Channel string `toml:"channel"` // worker mode
	URL     string `toml:"url"`     // django mode

	GroupTemplate *expr.Template `toml:"-"`
}

// MaxSocketSendBuffer is the largest server.socket_send_buffer, as server.Options
// allows.
const MaxSocketSendBuffer = 64 << 20

// MaxReceiveBuffer is the largest layer.receive_buffer, as layers.RedisOptions allows.
const MaxReceiveBuffer = 1 << 30

// The receive modes.
const (
	ModeRefuse = "refuse"
	ModeGroup  = "group"
	ModeWorker = "worker"
	ModeDjango = "django"
)

// Duration is a time.Duration written as Go text: "10s", "1m30s". It is a struct, not
// an integer type, so that a bare number (ttl = 600, as Django's REALTIME_HISTORY
// writes seconds) is a decoding error instead of 600 nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		if strings.Trim(string(b), "0123456789.") == "" {
			// A number in an inline table, which lines does not reach.
			return fmt.Errorf("config: duration %q needs a unit, e.g. \"%ss\"", b, b)
		}
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ServeClientJS reports whether GET /canal.js serves the browser client.
func (s Server) ServeClientJS() bool { return s.ClientJS == nil || *s.ClientJS }

// Pattern returns the route's pattern as written (path or regex).
func (r *Route) Pattern() string {
	if r.Path != "" {
		return r.Path
	}
	return r.Regex
}
