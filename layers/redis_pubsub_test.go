package layers

// The Pub/Sub layer's single-server tests. Checks that run on a server and on a
// cluster live in redis_cluster_test.go (runBackends): each check in one place, not
// both.

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// newPubSubLayer is newRedisLayer for the Pub/Sub layer.
func newPubSubLayer(t testing.TB, srv *canaltest.Redis, opts RedisPubSubOptions) *RedisPubSub {
	t.Helper()
	if len(opts.Hosts) == 0 && len(opts.Cluster) == 0 {
		opts.Hosts = []string{srv.URL()}
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	if opts.ClientOptions == nil {
		opts.ClientOptions = fastClient
	}
	l, err := NewRedisPubSub(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewRedisPubSub: %v", err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// numsub returns the number of subscribers Redis counts for a Pub/Sub channel.
func numsub(t testing.TB, c rueidis.Client, name string) int64 {
	t.Helper()
	m, err := c.Do(context.Background(), c.B().PubsubNumsub().Channel(name).Build()).ToArray()
	if err != nil || len(m) != 2 {
		t.Fatalf("PUBSUB NUMSUB: %v %v", m, err)
	}
	n, _ := m[1].AsInt64()
	return n
}

// receiveAsync starts Receive on channel and returns its result channel once the
// layer is subscribed to it (Pub/Sub loses what is published before).
func receiveAsync(t testing.TB, l *RedisPubSub, channel string) <-chan canal.Message {
	t.Helper()
	got := make(chan canal.Message, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, _ := l.Receive(ctx, channel)
		got <- m
	}()
	waitFor(t, "the subscription", func() bool { return l.holds(channel) })
	return got
}

func within(t testing.TB, c <-chan canal.Message) canal.Message {
	t.Helper()
	select {
	case m := <-c:
		if m == nil {
			t.Fatal("Receive failed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}
	return nil
}

func TestNewRedisPubSubOptions(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		opts    RedisPubSubOptions
		want    string
		unavail bool
	}{
		{"negative expiry", RedisPubSubOptions{Expiry: -1}, "Expiry", false},
		{"negative capacity", RedisPubSubOptions{Capacity: -1}, "Capacity", false},
		{"bad glob", RedisPubSubOptions{ChannelCapacity: []Capacity{{Pattern: "[", Size: 1}}}, "pattern", false},
		{"serializer", RedisPubSubOptions{SerializerFormat: "yaml"}, "SerializerFormat", false},
		{"unreachable", RedisPubSubOptions{Hosts: []string{srv.URL(), "redis://:pw@127.0.0.1:1"}}, "host 1", true},
	} {
		opts := tt.opts
		if len(opts.Hosts) == 0 {
			opts.Hosts = []string{srv.URL()}
		}
		opts.ClientOptions = fastClient
		_, err := NewRedisPubSub(ctx, opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, canal.ErrUnavailable) != tt.unavail {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
	l := newPubSubLayer(t, srv, RedisPubSubOptions{})
	if l.prefix != "asgi" || l.capacity != 100 || l.expiry != time.Minute || l.json || l.crypter != nil {
		t.Errorf("defaults: %+v", l)
	}
}

func TestRedisPubSubNames(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newPubSubLayer(t, srv, RedisPubSubOptions{})
	other := newPubSubLayer(t, srv, RedisPubSubOptions{})
	ctx := context.Background()
	re := regexp.MustCompile(`^asgispecific\.[0-9a-f]{32}$`)
	nop := func(canal.Message) bool { return true }
	for i := range 50 {
		var ch string
		var err error
		if i%2 == 0 {
			ch, err = l.NewChannel(ctx, "")
		} else {
			ch, _, err = l.Attach(ctx, "", nop)
		}
		if err != nil || !re.MatchString(ch) || ValidChannelName(ch) != nil {
			t.Fatalf("name %q, %v", ch, err)
		}
		if l.isAttachName(ch) != (i%2 == 1) || other.isAttachName(ch) {
			t.Fatalf("%q: attach name detection wrong", ch)
		}
		if !l.holds(ch) {
			t.Fatalf("%q not subscribed", ch)
		}
	}
	if ch, err := l.NewChannel(ctx, "chat"); err != nil || !strings.HasPrefix(ch, "asgichat.") {
		t.Fatalf("NewChannel(prefix) = %q, %v", ch, err)
	}
	for _, prefix := range []string{"bad prefix", "é", strings.Repeat("p", 63)} {
		if _, err := l.NewChannel(ctx, prefix); !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("NewChannel(%q): %v", prefix, err)
		}
	}
	for op, err := range map[string]error{
		"Send":      l.Send(ctx, "bad name", msg("x")),
		"GroupSend": l.GroupSend(ctx, "bad!group", msg("x")),
		"GroupAdd":  l.GroupAdd(ctx, "g", "a!b!c"),
	} {
		if !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("%s: %v", op, err)
		}
	}
	for op, err := range map[string]error{
		"Send":      l.Send(ctx, "w", msg("_private")),
		"GroupSend": l.GroupSend(ctx, "g", canal.Message{"no": "type"}),
		"SendBad":   l.Send(ctx, "w", msg("x", "v", struct{}{})),
	} {
		if !errors.Is(err, canal.ErrInvalidMessage) {
			t.Errorf("%s: %v", op, err)
		}
	}
}

func TestRedisPubSubWireFormat(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newPubSubLayer(t, srv, RedisPubSubOptions{})
	c := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan rueidis.PubSubMessage, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Receive(ctx, c.B().Subscribe().Channel("asgi__group__room", "asgispecific.x").Build(),
			func(m rueidis.PubSubMessage) { got <- m })
	}()
	waitFor(t, "the raw subscriber", func() bool { return numsub(t, c, "asgi__group__room") == 1 })
	if err := l.GroupSend(ctx, "room", msg("chat.message", "text", "hi")); err != nil {
		t.Fatal(err)
	}
	lsend(t, l, "asgispecific.x", msg("direct"))
	for _, want := range []struct{ channel, typ string }{{"asgi__group__room", "chat.message"}, {"asgispecific.x", "direct"}} {
		select {
		case m := <-got:
			if m.Channel != want.channel {
				t.Fatalf("published on %q; want %q", m.Channel, want.channel)
			}
			// Bare msgpack: no random prefix, no __asgi_channel__.
			dm, err := decodeMessage([]byte(m.Message))
			if err != nil || dm.Type() != want.typ || dm[asgiChannelKey] != nil {
				t.Fatalf("payload %q: %v %v", m.Message, dm, err)
			}
		case <-time.After(wait):
			t.Fatal("nothing published")
		}
	}
	cancel()
	<-done
}

// TestRedisPubSubReentrantDeliver checks that deliver may subscribe (GroupAdd to a new
// group, NewChannel) without deadlocking the connection that delivers.
func TestRedisPubSubReentrantDeliver(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newPubSubLayer(t, srv, RedisPubSubOptions{})
	ctx := context.Background()
	done := make(chan struct{})
	var name string
	name, _, err := l.Attach(ctx, "", func(m canal.Message) bool {
		if m.Type() == "nested" {
			close(done)
			return true
		}
		if err := l.GroupAdd(ctx, "new.group", name); err != nil {
			t.Error(err)
		}
		if _, err := l.NewChannel(ctx, ""); err != nil {
			t.Error(err)
		}
		l.GroupSend(ctx, "new.group", msg("nested"))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	lsend(t, l, name, msg("go"))
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("deadlock: nested message never delivered")
	}
}

func TestRedisPubSubIdleChannels(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newPubSubLayer(t, srv, RedisPubSubOptions{Expiry: 200 * time.Millisecond})
	c := srv.Client(t)
	ctx := context.Background()
	ch, _ := l.NewChannel(ctx, "")
	l.GroupAdd(ctx, "g", ch)
	waitFor(t, "the idle channel's unsubscription", func() bool {
		return numsub(t, c, ch) == 0 && numsub(t, c, "asgi__group__g") == 0
	})
	// Receive on it again subscribes again.
	got := receiveAsync(t, l, ch)
	lsend(t, l, ch, msg("back"))
	if within(t, got).Type() != "back" {
		t.Fatal("no message")
	}
	// A receiver waiting keeps it.
	got = receiveAsync(t, l, ch)
	time.Sleep(500 * time.Millisecond)
	lsend(t, l, ch, msg("still"))
	if within(t, got).Type() != "still" {
		t.Fatal("no message")
	}
}

func TestRedisPubSubShards(t *testing.T) {
	t.Parallel()
	srvs := []*canaltest.Redis{canaltest.StartRedis(t), canaltest.StartRedis(t), canaltest.StartRedis(t)}
	var urls []string
	var clients []rueidis.Client
	for _, s := range srvs {
		urls = append(urls, s.URL())
		clients = append(clients, s.Client(t))
	}
	l := newPubSubLayer(t, nil, RedisPubSubOptions{Hosts: urls})
	other := newPubSubLayer(t, nil, RedisPubSubOptions{Hosts: urls})
	ctx := context.Background()
	a, in := attachInbox(t, l)
	for _, g := range []string{"room", "chat_lobby", "a", "b"} {
		l.GroupAdd(ctx, g, a)
		name := "asgi__group__" + g
		for i := range 3 {
			if (numsub(t, clients[i], name) == 1) != (i == shardIndex(name, 3)) {
				t.Fatalf("%s subscribed on host %d; want only %d", name, i, shardIndex(name, 3))
			}
		}
		other.GroupSend(ctx, g, msg("g", "g", g))
		if m := in.next(t); m.String("g") != g {
			t.Fatal(m)
		}
	}
	if numsub(t, clients[shardIndex(a, 3)], a) != 1 {
		t.Fatal("channel subscribed on the wrong host")
	}
	lsend(t, other, a, msg("direct"))
	if in.next(t).Type() != "direct" {
		t.Fatal("no direct message")
	}
}

func TestRedisPubSubEncryptionAndJSON(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		opts   RedisPubSubOptions
		stored func(string) bool
	}{
		{"fernet", RedisPubSubOptions{SymmetricEncryptionKeys: []string{"k1", "k2"}}, func(p string) bool { return strings.HasPrefix(p, "gAAAAA") }},
		{"json", RedisPubSubOptions{SerializerFormat: "json"}, func(p string) bool { return strings.HasPrefix(p, "{") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newPubSubLayer(t, srv, tc.opts)
			other := newPubSubLayer(t, srv, tc.opts)
			a, in := attachInbox(t, l)
			lsend(t, other, a, msg("x", "n", 1, "s", "é"))
			sameMessage(t, in.next(t), canal.Message{"type": "x", "n": int64(1), "s": "é"})
			c := srv.Client(t)
			rctx, cancel := context.WithCancel(ctx)
			got := make(chan string, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.Receive(rctx, c.B().Subscribe().Channel("asgi__group__g").Build(), func(m rueidis.PubSubMessage) { got <- m.Message })
			}()
			waitFor(t, "the raw subscriber", func() bool { return numsub(t, c, "asgi__group__g") == 1 })
			other.GroupSend(ctx, "g", msg("y"))
			if p := <-got; !tc.stored(p) {
				t.Fatalf("payload %q", p)
			}
			cancel()
			<-done
		})
	}
	plain := newPubSubLayer(t, srv, RedisPubSubOptions{})
	enc := newPubSubLayer(t, srv, RedisPubSubOptions{SymmetricEncryptionKeys: []string{"k"}})
	a, in := attachInbox(t, enc)
	lsend(t, plain, a, msg("plain"))
	waitFor(t, "the skip", func() bool { return enc.Stats().Malformed == 1 })
	in.none(t, 0)
}

// TestRedisPubSubReconnect kills Redis: calls fail with canal.ErrUnavailable, and after
// a restart the layer subscribes again to everything.
func TestRedisPubSubReconnect(t *testing.T) {
	srv := canaltest.StartRedis(t)
	defer goleak.VerifyNone(t, leakOpts()...)
	var logs canaltest.LogBuffer
	l, err := NewRedisPubSub(context.Background(), RedisPubSubOptions{Hosts: []string{srv.URL()}, ClientOptions: fastClient,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx := context.Background()
	a, in := attachInbox(t, l)
	l.GroupAdd(ctx, "g", a)

	srv.Kill()
	calls := map[string]func(context.Context) error{
		"Send":       func(ctx context.Context) error { return l.Send(ctx, a, msg("x")) },
		"GroupSend":  func(ctx context.Context) error { return l.GroupSend(ctx, "g", msg("x")) },
		"NewChannel": func(ctx context.Context) error { _, err := l.NewChannel(ctx, ""); return err },
		"GroupAdd":   func(ctx context.Context) error { return l.GroupAdd(ctx, "other", a) },
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		err := call(ctx)
		cancel()
		if !errors.Is(err, canal.ErrUnavailable) || time.Since(start) > 2500*time.Millisecond {
			t.Errorf("%s with Redis down: %v after %v", name, err, time.Since(start))
		}
	}
	srv.Restart()
	waitFor(t, "the resubscription", func() bool { return l.Stats().Reconnects == 1 })
	c := srv.Client(t)
	if numsub(t, c, a) != 1 || numsub(t, c, "asgi__group__g") != 1 {
		t.Fatal("not subscribed again")
	}
	l.GroupSend(ctx, "g", msg("after"))
	if in.next(t).Type() != "after" {
		t.Fatal("no message after the restart")
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "connection lost") || !strings.Contains(out, "resubscribed") {
		t.Errorf("log:\n%s", out)
	}
}
