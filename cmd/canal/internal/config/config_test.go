package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const good = `# a full configuration
listen = "127.0.0.1:9000"
origins = ["https://example.com"]
shutdown_timeout = "10s"

[server]
max_connections = 1000
handshake_timeout = "5s"
ping_interval = "10s"
socket_send_buffer = 131072

[log]
level = "debug"
format = "json"

[admin]
listen = "127.0.0.1:9091"

[redis]
url = "redis://127.0.0.1:6379/0"

[layer]
prefix = "asgi"
receive_buffer = 33554432

[auth.ticket]
transports = ["subprotocol", "first_message"]

[auth.session]
url = "http://127.0.0.1:8000/session/"

[[bus]]
channel = "events"
group = "ct_{content_type_id}"

[[route]]
path = "ws/chat/<slug:room>/"
require = ["user.is_staff", 'user.permissions contains "chat.view_room"']
groups = ["chat_{room}", "user_{user.id}"]
events = ["chat.message"]
[route.receive]
mode = "group"
group = "chat_{room}"
type = "chat.message"

[[route]]
regex = '^ws/jobs/(?P<job>[0-9]+)/$'
auth = ["ticket"]
authorize = "http://127.0.0.1:8000/canal/authorize/"
groups = ["job_{job}"]
[route.receive]
mode = "worker"
channel = "jobs"
type = "job.message"

[[route]]
path = "ws/ask/"
anonymous = true
[route.receive]
mode = "django"
url = "http://127.0.0.1:8000/canal/receive/"
`

func env(m map[string]string) Env { return func(k string) string { return m[k] } }

var secrets = map[string]string{EnvSessionToken: "s3cret-session-token-s3cret-session", EnvDjangoToken: "s3cret-django-token"}

func TestParseGood(t *testing.T) {
	c, err := Parse("canal.toml", []byte(good), env(secrets))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.ShutdownTimeout.Duration != 10*time.Second || c.Log.Format != "json" ||
		c.Server.PingInterval.Duration != 10*time.Second || c.Server.SocketSendBuffer != 128<<10 {
		t.Errorf("top level: %+v", c)
	}
	if c.Layer.Backend != "redis" || !slices.Equal(c.Layer.Hosts, []string{"redis://127.0.0.1:6379/0"}) || c.Layer.ReceiveBuffer != 32<<20 {
		t.Errorf("layer defaults from redis.url: %+v", c.Layer)
	}
	if c.Bus[0].Redis != c.Redis.URL || c.Bus[0].GroupTemplate == nil {
		t.Errorf("bus: %+v", c.Bus[0])
	}
	r := c.Routes[0]
	if !slices.Equal(r.Auth, []string{KindSession, KindTicket}) || r.MaxGroups != DefaultMaxGroups ||
		len(r.Predicates) != 2 || len(r.GroupTemplates) != 2 || r.Receive.GroupTemplate == nil {
		t.Errorf("route[0]: %+v", r)
	}
	if !slices.Equal(c.Routes[1].RouteNames, []string{"job"}) || c.Routes[1].Receive.Mode != ModeWorker {
		t.Errorf("route[1]: %+v", c.Routes[1])
	}
	if c.Routes[2].Receive.Mode != ModeDjango || c.SessionToken != secrets[EnvSessionToken] {
		t.Errorf("route[2]: %+v", c.Routes[2])
	}
	if c.Auth.Session.Cookie != "sessionid" || !slices.Equal(c.Auth.Ticket.Transports, []string{"subprotocol", "first_message"}) {
		t.Errorf("auth: %+v %+v", c.Auth.Session, c.Auth.Ticket)
	}
}

// A route open to anonymous visitors does not get ticket auth by default.
func TestAnonymousDefaultAuth(t *testing.T) {
	doc := "[redis]\nurl = \"redis://r/0\"\n[auth.ticket]\n[auth.session]\nurl = \"http://127.0.0.1:8000/session/\"\n" +
		"[[route]]\npath = \"ws/a/\"\nanonymous = true\n[[route]]\npath = \"ws/b/\"\n"
	c, err := Parse("canal.toml", []byte(doc), env(secrets))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Routes[0].Auth, []string{KindSession}) || !slices.Equal(c.Routes[1].Auth, []string{KindSession, KindTicket}) {
		t.Errorf("auth: %v, %v", c.Routes[0].Auth, c.Routes[1].Auth)
	}
}

func TestParseMinimal(t *testing.T) {
	c, err := Parse("canal.toml", []byte("[[route]]\npath = \"ws/\"\nanonymous = true\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Layer.Backend != "memory" || c.Routes[0].Receive.Mode != ModeRefuse ||
		c.ShutdownTimeout.Duration != DefaultShutdownTimeout || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestEnvOverrides(t *testing.T) {
	e := map[string]string{
		EnvListen: "0.0.0.0:7000", EnvRedisURL: "redis://:pw@10.0.0.1:6379/2", EnvAdminListen: "127.0.0.1:9999",
		EnvLogLevel: "warn", EnvLogFormat: "json", EnvLayerKeys: "k1, k2,", EnvOrigins: "http://127.0.0.1:8000, .example.com",
	}
	c, err := Parse("canal.toml", []byte("listen = \"127.0.0.1:1\"\n[redis]\nurl = \"redis://127.0.0.1/0\"\n[[route]]\npath = \"ws/\"\nanonymous = true\n"), env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:7000" || c.Redis.URL != e[EnvRedisURL] || c.Admin.Listen != "127.0.0.1:9999" ||
		c.Log.Level != "warn" || c.Log.Format != "json" || !slices.Equal(c.LayerKeys, []string{"k1", "k2"}) ||
		!slices.Equal(c.Layer.Hosts, []string{e[EnvRedisURL]}) || !slices.Equal(c.Origins, []string{"http://127.0.0.1:8000", ".example.com"}) {
		t.Errorf("env: %+v", c)
	}
}

// Each kind of mistake, with the exact message canal check prints.
func TestParseErrors(t *testing.T) {
	const route = "[[route]]\npath = \"ws/<slug:room>/\"\nanonymous = true\n"
	cases := []struct {
		name string
		doc  string
		env  map[string]string
		want []string
	}{
		{"syntax", "listen = [\n", nil, []string{"canal.toml:1: array is incomplete"}},
		{"type", "listen = 5\n" + route, nil, []string{"canal.toml:1: listen: cannot decode TOML integer into struct field config.Config.Listen of type string"}},
		{"unknown key", route + "grups = [\"a\"]\n", nil, []string{"canal.toml:4: route.grups: unknown key"}},
		{"secret in file", "[auth.session]\nurl = \"http://x/session/\"\ntoken = \"abc\"\n" + route, nil,
			[]string{"canal.toml:3: auth.session.token: secrets are not read from the file: set the environment variable CANAL_SESSION_TOKEN"}},
		{"duration", "shutdown_timeout = \"5 minutes\"\n" + route, nil, []string{`canal.toml:1: shutdown_timeout: time: unknown unit " minutes" in duration "5 minutes"`}},
		{"no route", "", nil, []string{"canal.toml: route: no [[route]]: a server needs at least one"}},
		{"listen", "listen = \"8000\"\n" + route, nil, []string{`canal.toml:1: listen: "8000" is not host:port (e.g. 127.0.0.1:8001; also settable with CANAL_LISTEN)`}},
		{"listen env", route, map[string]string{EnvListen: "nope"}, []string{`canal.toml: listen: "nope" is not host:port (e.g. 127.0.0.1:8001; also settable with CANAL_LISTEN)`}},
		{"log", "[log]\nlevel = \"loud\"\nformat = \"xml\"\n" + route, nil, []string{
			`canal.toml:2: log.level: "loud" is not one of debug, info, warn, error`,
			`canal.toml:3: log.format: "xml" is not text or json`}},
		{"redis url", "[redis]\nurl = \"http://u:hunter2@x/\"\n" + route, nil, []string{`canal.toml:2: redis.url: scheme "http" is not redis, rediss or unix`}},
		{"server", "[server]\nping_interval = \"-1s\"\nsocket_send_buffer = 67108865\n" + route, nil, []string{
			"canal.toml:2: server.ping_interval: negative duration",
			"canal.toml:3: server.socket_send_buffer: 67108865 is over 67108864 bytes"}},
		{"receive buffer", "[layer]\nbackend = \"memory\"\nreceive_buffer = 1024\n" + route, nil, []string{
			"canal.toml:3: layer.receive_buffer: only for backend redis (the memory layer has no Redis queue to empty)"}},
		{"receive buffer size", "[redis]\nurl = \"redis://r/0\"\n[layer]\nreceive_buffer = -1\n" + route, nil, []string{
			"canal.toml:4: layer.receive_buffer: -1 is not within 0 and 1073741824 bytes"}},
		{"layer backend", "[layer]\nbackend = \"rabbit\"\n" + route, nil, []string{`canal.toml:2: layer.backend: "rabbit" is not redis (channels_redis' RedisChannelLayer), pubsub (RedisPubSubChannelLayer) or memory`}},
		{"layer without redis", "[layer]\nbackend = \"redis\"\n" + route, nil, []string{"canal.toml:1: layer.hosts: backend redis needs hosts, or redis.url (or CANAL_REDIS_URL)"}},
		{"ticket without redis", "[auth.ticket]\n" + route, nil, []string{"canal.toml:1: auth.ticket: tickets live in Redis: set redis.url (or CANAL_REDIS_URL)"}},
		{"ticket transport", "[redis]\nurl = \"redis://r/0\"\n[auth.ticket]\ntransports = [\"cookie\"]\n" + route, nil,
			[]string{`canal.toml:4: auth.ticket.transports[0]: "cookie" is not one of subprotocol, query, first_message`}},
		{"session without token", "[auth.session]\nurl = \"http://127.0.0.1:8000/session/\"\n" + route, nil,
			[]string{"canal.toml:1: auth.session: needs the environment variable CANAL_SESSION_TOKEN (Django's REALTIME_SESSION_TOKEN)"}},
		{"session url", "[auth.session]\nurl = \"/session/\"\n" + route, secrets,
			[]string{`canal.toml:2: auth.session.url: "/session/" is not an absolute http:// or https:// URL`}},
		{"bus", "[redis]\nurl = \"redis://r/0\"\n[[bus]]\nchannel = \"events\"\ngroup = \"ct_{content-type}\"\n" + route, nil,
			[]string{`canal.toml:5: bus[0].group: "content-type" is not a name (letters, digits and _ between dots)`}},
		{"bus without redis", "[[bus]]\nchannel = \"events\"\ngroup = \"all\"\n" + route, nil,
			[]string{"canal.toml:1: bus[0].redis: no Redis: set redis.url (or CANAL_REDIS_URL) or this key"}},
		{"no path", "[[route]]\nanonymous = true\n", nil,
			[]string{`canal.toml:1: route[0]: missing path (Django path() syntax, e.g. "ws/chat/<slug:room>/") or regex`}},
		{"bad pattern", "[[route]]\npath = \"ws/<foo:room>/\"\nanonymous = true\n", nil,
			[]string{`canal.toml:2: route[0].path: route "ws/<foo:room>/": unknown converter "foo"`}},
		{"nobody", "[[route]]\npath = \"ws/\"\n", nil,
			[]string{"canal.toml:1: route[0]: no credential kind configured and anonymous = false: nobody could connect (add an [auth.*] table, or set anonymous = true)"}},
		{"auth kind", "[[route]]\npath = \"ws/\"\nauth = [\"jwt\", \"ticket\", \"oauth\"]\n", nil, []string{
			`canal.toml:3: route[0].auth[0]: "jwt" is not configured: add an [auth.jwt] table`,
			`canal.toml:3: route[0].auth[1]: "ticket" is not configured: add an [auth.ticket] table`,
			`canal.toml:3: route[0].auth[2]: "oauth" is not a credential kind (session, ticket, jwt, signed, or one of auth.django.kinds)`}},
		{"jwt without key", "[auth.jwt]\n" + route, nil, []string{
			"canal.toml:1: auth.jwt: needs the environment variable CANAL_JWT_SIGNING_KEY (SIMPLE_JWT's SIGNING_KEY, by default Django's SECRET_KEY)"}},
		{"jwt key in file", "[auth.jwt]\nsigning_key = \"k\"\n" + route, nil, []string{
			"canal.toml:2: auth.jwt.signing_key: secrets are not read from the file: set the environment variable CANAL_JWT_SIGNING_KEY"}},
		{"jwt algorithm", "[auth.jwt]\nalgorithm = \"none\"\n" + route, map[string]string{EnvJWTKey: "k"}, []string{
			`canal.toml:2: auth.jwt.algorithm: "none" is not supported: use HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512 or EdDSA`}},
		{"signed", "[auth.signed]\nsalt = \"x\"\n" + route, map[string]string{EnvSigningKey: "k"}, []string{
			`canal.toml:1: auth.signed.max_age: required: how old a token may be (signing.loads' max_age), e.g. "1m"`}},
		{"django kinds", "[auth.django]\nurl = \"http://127.0.0.1:8000/auth/\"\nkinds = [\"drf\", \"session\", \"drf\", \"bad kind!\"]\n" + route, secrets, []string{
			`canal.toml:3: auth.django.kinds[1]: "session" is one of canal's own kinds (session, ticket, jwt, signed): name Django's other kinds here`,
			`canal.toml:3: auth.django.kinds[2]: "drf" is listed twice`,
			`canal.toml:3: auth.django.kinds[3]: Kind "bad kind!": want 1 to 64 letters, digits, '_', '-' or '.'`}},
		{"tickets and tokens", "[redis]\nurl = \"redis://r/0\"\n[auth.ticket]\n[auth.signed]\nmax_age = \"1m\"\n[[route]]\npath = \"ws/\"\nauth = [\"ticket\", \"signed\"]\n",
			map[string]string{EnvSigningKey: "k"}, []string{
				"canal.toml:8: route[0].auth: a route takes tickets or tokens, not both (each waits for its own credential)"}},
		{"anonymous first message", "[auth.token]\ntransports = [\"first_message\"]\n[auth.signed]\nmax_age = \"1m\"\n[[route]]\npath = \"ws/\"\nanonymous = true\nauth = [\"signed\"]\n",
			map[string]string{EnvSigningKey: "k"}, []string{
				"canal.toml:8: route[0].auth: anonymous = true cannot wait for a first-message token: drop first_message from auth.token.transports or anonymous"}},
		{"require", route + "require = [\"user.is_staff\", \"user.perms has 'x'\"]\n", nil,
			[]string{`canal.toml:4: route[0].require[1]: "user.perms has 'x'": unknown operator "has" (==, != or contains)`}},
		{"groups", route + "groups = [\n  \"chat_{room}\",\n  \"chat_{rooom}\",\n  \"bad group!\",\n]\n", nil, []string{
			"canal.toml:6: route[0].groups[1]: {rooom}: the route pattern captures only room",
			`canal.toml:7: route[0].groups[2]: "bad group!" is not a valid group name (at most 99 of a-z A-Z 0-9 - _ .)`}},
		{"events", route + "events = [\"chat.message\", \"_private\", \"chat.message\", \"canal.bus.message\", \"websocket.close\"]\n", nil, []string{
			`canal.toml:4: route[0].events[1]: "_private" is not a message type (like "chat.message")`,
			`canal.toml:4: route[0].events[2]: "chat.message" is listed twice`,
			`canal.toml:4: route[0].events[3]: "canal.bus.message": types starting with canal. are canal's own (bus messages, user refresh and disconnect)`,
			`canal.toml:4: route[0].events[4]: "websocket.close": websocket.send, websocket.close and the other websocket. types are built in, never sent as JSON`}},
		{"anonymous ticket", "[redis]\nurl = \"redis://r/0\"\n[auth.ticket]\n[[route]]\npath = \"ws/\"\nanonymous = true\nauth = [\"ticket\"]\n", nil,
			[]string{`canal.toml:7: route[0].auth: ticket auth always needs a ticket, so anonymous = true cannot hold: drop "ticket" or anonymous`}},
		{"max groups", route + "max_groups = 100000\n", nil, []string{"canal.toml:4: route[0].max_groups: 100000 is not between 1 and 10000"}},
		{"authorize", route + "authorize = \"http://127.0.0.1:8000/authorize/\"\n", nil,
			[]string{"canal.toml:4: route[0].authorize: needs the environment variable CANAL_DJANGO_TOKEN (the secret Django checks)"}},
		{"receive mode", route + "[route.receive]\nmode = \"echo\"\n", nil, []string{`canal.toml:5: route[0].receive.mode: "echo" is not refuse, group, worker or django`}},
		{"receive group", route + "[route.receive]\nmode = \"group\"\nchannel = \"x\"\n", nil, []string{
			"canal.toml:4: route[0].receive.type: missing: the message type Django handles, e.g. \"chat.message\"",
			"canal.toml:4: route[0].receive.group: missing: the group client messages go to, e.g. \"chat_{room}\"",
			"canal.toml:6: route[0].receive.channel: only for mode worker (this route's mode is group)"}},
		{"receive worker on memory", route + "[route.receive]\nmode = \"worker\"\nchannel = \"specific.x!y\"\ntype = \"a.b\"\n", nil, []string{
			`canal.toml:5: route[0].receive.mode: worker needs a layer Django shares: set layer.backend to redis or pubsub`,
			`canal.toml:6: route[0].receive.channel: "specific.x!y" is not a worker channel name (at most 99 of a-z A-Z 0-9 - _ .)`}},
		{"receive django", route + "[route.receive]\nmode = \"django\"\n", nil, []string{
			"canal.toml:4: route[0].receive.url: missing: the Django URL client messages are posted to",
			"canal.toml:5: route[0].receive.mode: django needs the environment variable CANAL_DJANGO_TOKEN (the secret Django checks)"}},
		{"refuse with fields", route + "[route.receive]\ntype = \"a.b\"\n", nil, []string{"canal.toml:5: route[0].receive.type: only for mode group or worker (this route's mode is refuse)"}},
		{"second route", route + route + "[route.receive]\nmode = \"group\"\ntype = \"x.y\"\ngroup = \"{user.}\"\n", nil,
			[]string{`canal.toml:10: route[1].receive.group: "user." is not a name (letters, digits and _ between dots)`}},
		{"layer keys on memory", route, map[string]string{EnvLayerKeys: "k"}, []string{
			"canal.toml: CANAL_LAYER_SYMMETRIC_ENCRYPTION_KEYS (environment): set, but the layer is memory (encryption is for Redis layers)"}},
		{"history", "[[layer.history]]\nsize = -1\nttl = \"0s\"\n[[layer.history]]\ngroup = \"feed_[\"\nsize = 100001\n" +
			"[[layer.history]]\ngroup = \"a_*\"\nttl = \"-1m\"\n[[layer.history]]\ngroup = \"a_*\"\n" + route, nil, []string{
			`canal.toml:1: layer.history[0].group: missing: a glob of group names, e.g. "feed_*"`,
			"canal.toml:2: layer.history[0].size: -1 is not between 0 and 100000 (0: the default, 100)",
			"canal.toml:3: layer.history[0].ttl: must be positive (omit it for the default, 5m0s)",
			`canal.toml:5: layer.history[1].group: "feed_[" is not a glob (path.Match syntax: * ? [a-z])`,
			"canal.toml:6: layer.history[1].size: 100001 is not between 0 and 100000 (0: the default, 100)",
			"canal.toml:9: layer.history[2].ttl: must be positive (omit it for the default, 5m0s)",
			`canal.toml:11: layer.history[3].group: "a_*" is listed twice (the first matching rule wins)`}},
		{"bare durations", "shutdown_timeout = 30\n[[layer.history]]\ngroup = \"a\"\n[[layer.history]]\ngroup = \"b\"\nttl = 600\nsize = 10\n" + route, nil, []string{
			`canal.toml:1: shutdown_timeout: a duration needs a unit: write it as text, e.g. "600s" or "10m"`,
			`canal.toml:6: layer.history[1].ttl: a duration needs a unit: write it as text, e.g. "600s" or "10m"`}},
		{"bare duration inline", "layer = { history = [{ group = \"a\", ttl = 600 }] }\n" + route, nil, []string{
			`canal.toml: config: duration "600" needs a unit, e.g. "600s"`}},
		{"history on pubsub", "[redis]\nurl = \"redis://r/0\"\n[layer]\nbackend = \"pubsub\"\n[[layer.history]]\ngroup = \"feed_*\"\n" + route, nil, []string{
			"canal.toml:5: layer.history: the pubsub layer keeps no history: set layer.backend to redis (channels_redis' RedisChannelLayer, which django_canal.history publishes on)"}},
		{"recover without history", route + "groups = [\"feed_{room}\"]\nrecover = [\"feed_*\"]\n", nil, []string{
			`canal.toml:5: route[0].recover[0]: "feed_*": no [[layer.history]] rule covers it (add one with group = "feed_*"): without a history there is nothing to recover`}},
		{"recover not covered", "[[layer.history]]\ngroup = \"feed_news\"\n" + route + "recover = [\n  \"feed_*\",\n  \"feed_news\",\n  \"[\",\n  \"\",\n]\n", nil, []string{
			`canal.toml:7: route[0].recover[0]: "feed_*": no [[layer.history]] rule covers it (add one with group = "feed_*"): without a history there is nothing to recover`,
			`canal.toml:9: route[0].recover[2]: "[" is not a glob (path.Match syntax: * ? [a-z])`,
			`canal.toml:10: route[0].recover[3]: empty: a glob of this route's groups, e.g. "feed_*"`}},
		{"client_js type", "[server]\nclient_js = \"yes\"\n" + route, nil, []string{
			"canal.toml:2: server.client_js: cannot decode TOML string into struct field config.Server.ClientJS of type bool"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("canal.toml", []byte(c.doc), env(c.env))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %T", err)
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, c.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("a password reached the error")
			}
		})
	}
}

// [[layer.history]] reaches the layer with its defaults left to it, and a recover glob
// is covered by a rule that matches it as written.
func TestParseHistory(t *testing.T) {
	const head = "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n"
	const route = "[[route]]\npath = \"ws/<slug:feed>/\"\nanonymous = true\ngroups = [\"feed_{feed}\"]\n"
	ttl := func(d time.Duration) *Duration { return &Duration{d} }
	cases := []struct {
		name    string
		doc     string
		history []HistoryRule
		recover []string
		js      bool
	}{
		{"none", head + route, nil, nil, true},
		{"defaults", head + "[[layer.history]]\ngroup = \"feed_*\"\n" + route + "recover = [\"feed_*\"]\n",
			[]HistoryRule{{Group: "feed_*"}}, []string{"feed_*"}, true},
		{"sized", head + "[server]\nclient_js = false\n[[layer.history]]\ngroup = \"feed_*\"\nsize = 1000\nttl = \"10m\"\n" +
			"[[layer.history]]\ngroup = \"short_[0-9]\"\nsize = 100000\n" + route + "recover = [\"feed_news\", \"feed_*_x\", \"short_[0-9]\"]\n",
			[]HistoryRule{{Group: "feed_*", Size: 1000, TTL: ttl(10 * time.Minute)}, {Group: "short_[0-9]", Size: 100000}},
			[]string{"feed_news", "feed_*_x", "short_[0-9]"}, false},
		{"memory", "[[layer.history]]\ngroup = \"*\"\nsize = 0\n" + route + "recover = [\"feed_*\"]\n",
			[]HistoryRule{{Group: "*"}}, []string{"feed_*"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("canal.toml", []byte(c.doc), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(cfg.Layer.History, c.history, func(a, b HistoryRule) bool {
				return a.Group == b.Group && a.Size == b.Size && (a.TTL == nil) == (b.TTL == nil) && (a.TTL == nil || *a.TTL == *b.TTL)
			}) {
				t.Errorf("history %+v, want %+v", cfg.Layer.History, c.history)
			}
			if !slices.Equal(cfg.Routes[0].Recover, c.recover) {
				t.Errorf("recover %v, want %v", cfg.Routes[0].Recover, c.recover)
			}
			if cfg.Server.ServeClientJS() != c.js {
				t.Errorf("client_js %v, want %v", cfg.Server.ServeClientJS(), c.js)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "canal.toml")
	if err := os.WriteFile(p, []byte("[[route]]\npath = \"ws/\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "canal.toml:1: route[0]: no credential kind") {
		t.Errorf("Load: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
