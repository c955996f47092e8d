package config

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/cmd/canal/internal/expr"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
)

// Defaults.
const (
	DefaultListen          = "127.0.0.1:8001"
	DefaultShutdownTimeout = 25 * time.Second
	DefaultDjangoTimeout   = 5 * time.Second
	DefaultMaxGroups       = 256
	MaxMaxGroups           = 10000
	// BusType is the layer type canal gives bus messages internally; routes may not
	// list it in events.
	BusType = "canal.bus.message"
)

// The credential kinds.
const (
	KindTicket  = "ticket"
	KindSession = "session"
)

var transports = []string{"subprotocol", "query", "first_message"}

func (c *Config) applyEnv(env Env, v *validator) {
	set := func(dst *string, name string) {
		if s := env(name); s != "" {
			*dst = s
		}
	}
	set(&c.Listen, EnvListen)
	if s := env(EnvOrigins); s != "" {
		c.Origins = nil
		for _, o := range strings.Split(s, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.Origins = append(c.Origins, o)
			}
		}
	}
	set(&c.Admin.Listen, EnvAdminListen)
	set(&c.Redis.URL, EnvRedisURL)
	set(&c.Log.Level, EnvLogLevel)
	set(&c.Log.Format, EnvLogFormat)
	c.SessionToken = env(EnvSessionToken)
	c.DjangoToken = env(EnvDjangoToken)
	c.JWTKey = env(EnvJWTKey)
	c.SigningKey = env(EnvSigningKey)
	c.LayerKeys = list(v, env, EnvLayerKeys)
	c.SigningOldKey = list(v, env, EnvSigningOld)
}

// list reads a comma-separated environment variable.
func list(v *validator, env Env, name string) []string {
	s := env(name)
	if s == "" {
		return nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		v.envErrf(name, "no value in the comma-separated list")
	}
	return out
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ShutdownTimeout.Duration == 0 {
		c.ShutdownTimeout = Duration{DefaultShutdownTimeout}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Layer.Backend == "" {
		c.Layer.Backend = "memory"
		if c.Redis.URL != "" {
			c.Layer.Backend = "redis"
		}
	}
	if len(c.Layer.Hosts) == 0 && c.Redis.URL != "" && c.Layer.Backend != "memory" {
		c.Layer.Hosts = []string{c.Redis.URL}
		c.Layer.hostsFromRedis = true // checked as redis.url
	}
	if c.Django.Timeout.Duration == 0 {
		c.Django.Timeout = Duration{DefaultDjangoTimeout}
	}
	if t := c.Auth.Ticket; t != nil && len(t.Transports) == 0 {
		t.Transports = slices.Clone(transports)
	}
	if len(c.Auth.Token.Transports) == 0 {
		c.Auth.Token.Transports = slices.Clone(transports)
		c.Auth.Token.defaulted = true
	}
	if s := c.Auth.Session; s != nil && s.Cookie == "" {
		s.Cookie = "sessionid"
	}
	for i := range c.Bus {
		if c.Bus[i].Redis == "" {
			c.Bus[i].Redis = c.Redis.URL
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Auth == nil {
			if c.Auth.Session != nil {
				r.Auth = append(r.Auth, KindSession)
			}
			// A ticket is never optional (middleware.Ticket waits for one), so a
			// route open to anonymous visitors takes the other kinds only; and a
			// route takes tickets or tokens, tickets first.
			switch {
			case c.Auth.Ticket != nil && !r.Anonymous:
				r.Auth = append(r.Auth, KindTicket)
			case c.Auth.Ticket == nil:
				r.Auth = append(r.Auth, c.TokenKinds()...)
			}
		}
		if r.MaxGroups == 0 {
			r.MaxGroups = DefaultMaxGroups
		}
		if r.Receive.Mode == "" {
			r.Receive.Mode = ModeRefuse
		}
	}
}

func (c *Config) validate(v *validator) {
	checkAddr(v, "listen", EnvListen, c.Listen)
	if c.Admin.Listen != "" {
		checkAddr(v, "admin.listen", EnvAdminListen, c.Admin.Listen)
	}
	if len(c.Origins) > 0 {
		if _, err := middleware.Origin(c.Origins...); err != nil {
			v.errf("origins", "%v", strings.TrimPrefix(err.Error(), "middleware: "))
		}
	}
	if c.ShutdownTimeout.Duration < 0 {
		v.errf("shutdown_timeout", "negative duration")
	}
	c.Server.validate(v)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.errf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.errf("log.format", "%q is not text or json", c.Log.Format)
	}
	if c.Redis.URL != "" {
		checkRedisURL(v, "redis.url", c.Redis.URL)
	}
	c.validateLayer(v)
	c.validateAuth(v)
	c.validateTokens(v)
	if c.Django.Timeout.Duration < 0 {
		v.errf("django.timeout", "negative duration")
	}
	for i := range c.Bus {
		c.Bus[i].validate(v, fmt.Sprintf("bus[%d]", i))
	}
	if len(c.Routes) == 0 {
		v.errf("route", "no [[route]]: a server needs at least one")
	}
	for i := range c.Routes {
		c.validateRoute(v, i)
	}
}

func (s Server) validate(v *validator) {
	if s.MaxConnections < 0 {
		v.errf("server.max_connections", "negative")
	}
	if s.HandshakeTimeout.Duration < 0 {
		v.errf("server.handshake_timeout", "negative duration")
	}
	if s.ReadLimit < 0 {
		v.errf("server.read_limit", "negative")
	}
	if s.SessionWorkers < 0 {
		v.errf("server.session_workers", "negative")
	}
	if s.PingInterval.Duration < 0 {
		v.errf("server.ping_interval", "negative duration")
	}
	if s.SocketSendBuffer > MaxSocketSendBuffer {
		v.errf("server.socket_send_buffer", "%d is over %d bytes", s.SocketSendBuffer, MaxSocketSendBuffer)
	}
}

func checkAddr(v *validator, key, env, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		v.errf(key, "%q is not host:port (e.g. 127.0.0.1:8001; also settable with %s)", addr, env)
	}
}

// checkRedisURL checks a Redis URL without ever quoting it: it may hold a password.
func checkRedisURL(v *validator, key, s string) {
	u, err := url.Parse(s)
	if err != nil {
		v.errf(key, "not a URL")
		return
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			v.errf(key, "no host (expected redis://host:port/db)")
		}
	case "unix":
		if u.Path == "" {
			v.errf(key, "no socket path (expected unix:///path/to/redis.sock)")
		}
	default:
		v.errf(key, "scheme %q is not redis, rediss or unix", u.Scheme)
	}
}

func checkHTTPURL(v *validator, key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(key, "%q is not an absolute http:// or https:// URL", s)
	}
}

func (c *Config) validateLayer(v *validator) {
	l := &c.Layer
	switch l.Backend {
	case "memory":
		if len(l.Hosts) > 0 {
			v.errf("layer.hosts", "the memory layer has no hosts (backend is memory)")
		}
	case "redis", "pubsub":
		if len(l.Hosts) == 0 {
			v.errf("layer.hosts", "backend %s needs hosts, or redis.url (or %s)", l.Backend, EnvRedisURL)
		}
		for i, h := range l.Hosts {
			if !l.hostsFromRedis {
				checkRedisURL(v, fmt.Sprintf("layer.hosts[%d]", i), h)
			}
		}
	default:
		v.errf("layer.backend", "%q is not redis (channels_redis' RedisChannelLayer), pubsub (RedisPubSubChannelLayer) or memory", l.Backend)
	}
	if l.Capacity < 0 {
		v.errf("layer.capacity", "negative")
	}
	switch {
	case l.ReceiveBuffer < 0 || l.ReceiveBuffer > MaxReceiveBuffer:
		v.errf("layer.receive_buffer", "%d is not within 0 and %d bytes", l.ReceiveBuffer, MaxReceiveBuffer)
	case l.ReceiveBuffer > 0 && l.Backend != "redis":
		v.errf("layer.receive_buffer", "only for backend redis (the %s layer has no Redis queue to empty)", l.Backend)
	}
	if len(c.LayerKeys) > 0 && l.Backend == "memory" {
		v.envErrf(EnvLayerKeys, "set, but the layer is memory (encryption is for Redis layers)")
	}
	c.validateHistory(v)
}

// validateHistory checks the [[layer.history]] rules as layers.NewRedis and
// layers.NewMemory would, so that canal check finds what serve would fail on.
func (c *Config) validateHistory(v *validator) {
	l := &c.Layer
	if len(l.History) > 0 && l.Backend == "pubsub" {
		// RedisPubSub sends on Pub/Sub channels: there is no stream to keep.
		v.errf("layer.history", "the pubsub layer keeps no history: set layer.backend to redis (channels_redis' RedisChannelLayer, which django_canal.history publishes on)")
	}
	seen := map[string]bool{}
	for i, h := range l.History {
		key := fmt.Sprintf("layer.history[%d]", i)
		switch _, err := path.Match(h.Group, ""); {
		case h.Group == "":
			v.errf(key+".group", "missing: a glob of group names, e.g. \"feed_*\"")
		case err != nil:
			v.errf(key+".group", "%q is not a glob (path.Match syntax: * ? [a-z])", h.Group)
		case seen[h.Group]:
			v.errf(key+".group", "%q is listed twice (the first matching rule wins)", h.Group)
		}
		seen[h.Group] = true
		if h.Size < 0 || h.Size > layers.MaxHistorySize {
			v.errf(key+".size", "%d is not between 0 and %d (0: the default, %d)", h.Size, layers.MaxHistorySize, layers.DefaultHistorySize)
		}
		if h.TTL != nil && h.TTL.Duration <= 0 {
			v.errf(key+".ttl", "must be positive (omit it for the default, %v)", layers.DefaultHistoryTTL)
		}
	}
}

// historyCovers reports whether a history rule keeps the groups the recover glob
// names: a rule whose glob matches the recover glob as written ("feed_*" covers
// "feed_*" and "feed_news"), or is the same text.
func (c *Config) historyCovers(glob string) bool {
	for _, h := range c.Layer.History {
		if ok, _ := path.Match(h.Group, glob); ok || h.Group == glob {
			return true
		}
	}
	return false
}

func (c *Config) validateAuth(v *validator) {
	if t := c.Auth.Ticket; t != nil {
		if c.Redis.URL == "" {
			v.errf("auth.ticket", "tickets live in Redis: set redis.url (or %s)", EnvRedisURL)
		}
		for i, tr := range t.Transports {
			if !slices.Contains(transports, tr) {
				v.errf(fmt.Sprintf("auth.ticket.transports[%d]", i), "%q is not one of %s", tr, strings.Join(transports, ", "))
			}
		}
	}
	if s := c.Auth.Session; s != nil {
		if s.URL == "" {
			v.errf("auth.session.url", "missing: django_canal's session endpoint, e.g. http://127.0.0.1:8000/session/")
		} else {
			checkHTTPURL(v, "auth.session.url", s.URL)
		}
		if c.SessionToken == "" {
			v.errf("auth.session", "needs the environment variable %s (Django's REALTIME_SESSION_TOKEN)", EnvSessionToken)
		}
	}
}

func (b *Bus) validate(v *validator, key string) {
	if b.Channel == "" {
		v.errf(key+".channel", "missing: the Redis Pub/Sub channel Django publishes to")
	}
	if b.Redis == "" {
		v.errf(key+".redis", "no Redis: set redis.url (or %s) or this key", EnvRedisURL)
	} else {
		checkRedisURL(v, key+".redis", b.Redis)
	}
	if b.Group == "" {
		v.errf(key+".group", "missing: a template over the message's fields, e.g. \"ct_{content_type_id}\"")
		return
	}
	t, err := expr.ParseTemplate(b.Group, expr.Names{Fields: true})
	if err != nil {
		v.errf(key+".group", "%v", trimExpr(err))
		return
	}
	b.GroupTemplate = t
}

func trimExpr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, expr.ErrSyntax.Error()+": ")
	return s
}

// pathNames finds the names a Django path() pattern captures: <name> and <conv:name>.
var pathNames = regexp.MustCompile(`<(?:[^<>:]+:)?([^<>:]+)>`)

func (c *Config) validateRoute(v *validator, i int) {
	r := &c.Routes[i]
	key := fmt.Sprintf("route[%d]", i)
	nop := canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) { return nil, nil })
	switch {
	case r.Path != "" && r.Regex != "":
		v.errf(key+".regex", "a route has path or regex, not both")
	case r.Path != "":
		if _, err := router.New(router.Path(r.Path, nop)); err != nil {
			v.errf(key+".path", "%v", strings.TrimPrefix(err.Error(), "router: "))
		} else {
			for _, m := range pathNames.FindAllStringSubmatch(r.Path, -1) {
				r.RouteNames = append(r.RouteNames, m[1])
			}
		}
	case r.Regex != "":
		if _, err := router.New(router.Regex(r.Regex, nop)); err != nil {
			v.errf(key+".regex", "%v", strings.TrimPrefix(err.Error(), "router: "))
		} else {
			for _, n := range regexp.MustCompile(r.Regex).SubexpNames() {
				if n != "" {
					r.RouteNames = append(r.RouteNames, n)
				}
			}
		}
	default:
		v.errf(key, "missing path (Django path() syntax, e.g. \"ws/chat/<slug:room>/\") or regex")
	}
	names := expr.Names{Route: r.RouteNames}
	c.validateRouteAuth(v, r, key)
	for j, s := range r.Require {
		p, err := expr.ParsePredicate(s, names)
		if err != nil {
			v.errf(fmt.Sprintf("%s.require[%d]", key, j), "%v", trimExpr(err))
			continue
		}
		r.Predicates = append(r.Predicates, p)
	}
	if r.Authorize != "" {
		checkHTTPURL(v, key+".authorize", r.Authorize)
		if c.DjangoToken == "" {
			v.errf(key+".authorize", "needs the environment variable %s (the secret Django checks)", EnvDjangoToken)
		}
	}
	if r.MaxGroups < 1 || r.MaxGroups > MaxMaxGroups {
		v.errf(key+".max_groups", "%d is not between 1 and %d", r.MaxGroups, MaxMaxGroups)
	}
	for j, s := range r.Groups {
		t, err := expr.ParseTemplate(s, names)
		if err != nil {
			v.errf(fmt.Sprintf("%s.groups[%d]", key, j), "%v", trimExpr(err))
			continue
		}
		if t.Literal() {
			if err := layers.ValidGroupName(s); err != nil {
				v.errf(fmt.Sprintf("%s.groups[%d]", key, j), "%q is not a valid group name (at most 99 of a-z A-Z 0-9 - _ .)", s)
			}
		}
		r.GroupTemplates = append(r.GroupTemplates, t)
	}
	seen := map[string]bool{}
	for j, t := range r.Events {
		k := fmt.Sprintf("%s.events[%d]", key, j)
		switch err := (canal.Message{"type": t}).ValidateType(); {
		case err != nil:
			v.errf(k, "%q is not a message type (like \"chat.message\")", t)
		case strings.HasPrefix(t, "canal."):
			v.errf(k, "%q: types starting with canal. are canal's own (bus messages, user refresh and disconnect)", t)
		case strings.HasPrefix(t, "websocket."):
			v.errf(k, "%q: websocket.send, websocket.close and the other websocket. types are built in, never sent as JSON", t)
		case seen[t]:
			v.errf(k, "%q is listed twice", t)
		}
		seen[t] = true
	}
	c.validateReceive(v, r, key+".receive", names)
	for j, g := range r.Recover {
		k := fmt.Sprintf("%s.recover[%d]", key, j)
		switch _, err := path.Match(g, ""); {
		case g == "":
			v.errf(k, "empty: a glob of this route's groups, e.g. \"feed_*\"")
		case err != nil:
			v.errf(k, "%q is not a glob (path.Match syntax: * ? [a-z])", g)
		case !c.historyCovers(g):
			v.errf(k, "%q: no [[layer.history]] rule covers it (add one with group = %q): without a history there is nothing to recover", g, g)
		}
	}
}

func (c *Config) validateReceive(v *validator, r *Route, key string, names expr.Names) {
	rc := &r.Receive
	unused := func(field, val, modes string) {
		if val != "" {
			v.errf(key+"."+field, "only for mode %s (this route's mode is %s)", modes, rc.Mode)
		}
	}
	needType := func() {
		if rc.Type == "" {
			v.errf(key+".type", "missing: the message type Django handles, e.g. \"chat.message\"")
		} else if err := (canal.Message{"type": rc.Type}).ValidateType(); err != nil {
			v.errf(key+".type", "%q is not a message type (like \"chat.message\")", rc.Type)
		}
	}
	switch rc.Mode {
	case ModeRefuse:
		unused("group", rc.Group, ModeGroup)
		unused("type", rc.Type, "group or worker")
		unused("channel", rc.Channel, ModeWorker)
		unused("url", rc.URL, ModeDjango)
	case ModeGroup:
		unused("channel", rc.Channel, ModeWorker)
		unused("url", rc.URL, ModeDjango)
		needType()
		if rc.Group == "" {
			v.errf(key+".group", "missing: the group client messages go to, e.g. \"chat_{room}\"")
		} else if t, err := expr.ParseTemplate(rc.Group, names); err != nil {
			v.errf(key+".group", "%v", trimExpr(err))
		} else {
			rc.GroupTemplate = t
		}
	case ModeWorker:
		unused("group", rc.Group, ModeGroup)
		unused("url", rc.URL, ModeDjango)
		needType()
		switch {
		case rc.Channel == "":
			v.errf(key+".channel", "missing: the channel `manage.py runworker` reads, e.g. \"chat-worker\"")
		case strings.Contains(rc.Channel, "!") || layers.ValidChannelName(rc.Channel) != nil:
			v.errf(key+".channel", "%q is not a worker channel name (at most 99 of a-z A-Z 0-9 - _ .)", rc.Channel)
		}
		if c.Layer.Backend == "memory" {
			v.errf(key+".mode", "worker needs a layer Django shares: set layer.backend to redis or pubsub")
		}
	case ModeDjango:
		unused("group", rc.Group, ModeGroup)
		unused("type", rc.Type, "group or worker")
		unused("channel", rc.Channel, ModeWorker)
		if rc.URL == "" {
			v.errf(key+".url", "missing: the Django URL client messages are posted to")
		} else {
			checkHTTPURL(v, key+".url", rc.URL)
		}
		if c.DjangoToken == "" {
			v.errf(key+".mode", "django needs the environment variable %s (the secret Django checks)", EnvDjangoToken)
		}
	default:
		v.errf(key+".mode", "%q is not refuse, group, worker or django", rc.Mode)
	}
}
