package layers

// The core layer's test helpers and its single-server tests. Checks that run on a
// server and on a cluster live in redis_cluster_test.go (runBackends): each check in
// one place, not both.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// quietLogger discards the layer's warnings, which several tests provoke.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// fastClient makes a dead Redis fail fast.
func fastClient(o *rueidis.ClientOption) {
	o.Dialer.Timeout = 300 * time.Millisecond
	o.ConnWriteTimeout = 500 * time.Millisecond
}

// newRedisLayer returns a layer on srv (unless opts names hosts or a cluster), closed
// by the test's cleanup.
func newRedisLayer(t testing.TB, srv *canaltest.Redis, opts RedisOptions) *Redis {
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
	l, err := NewRedis(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func lsend(t testing.TB, l canal.Layer, channel string, m canal.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := l.Send(ctx, channel, m); err != nil {
		t.Fatalf("Send(%q): %v", channel, err)
	}
}

func lexpectEmpty(t testing.TB, l canal.Layer, channel string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if got, err := l.Receive(ctx, channel); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive(%q) = %v, %v; want nothing", channel, got, err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// zmembers returns a sorted set's members in score order.
func zmembers(t testing.TB, c rueidis.Client, key string) []string {
	t.Helper()
	m, err := c.Do(context.Background(), c.B().Zrange().Key(key).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		t.Fatalf("ZRANGE %s: %v", key, err)
	}
	return m
}

func ttl(t testing.TB, c rueidis.Client, key string) int64 {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Ttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func zadd(t testing.TB, c rueidis.Client, key string, score float64, member []byte) {
	t.Helper()
	err := c.Do(context.Background(), c.B().Zadd().Key(key).ScoreMember().ScoreMember(score, string(member)).Build()).Error()
	if err != nil {
		t.Fatal(err)
	}
}

func nowf() float64 { return float64(time.Now().UnixMicro()) / 1e6 }

// stored builds a member as channels_redis stores it: 12 random bytes, then msgpack.
func stored(t testing.TB, m map[string]any) []byte {
	t.Helper()
	b, err := appendMsgpack([]byte("0123456789ab"), m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeStored reads a member written with the default options.
func decodeStored(t testing.TB, member string) canal.Message {
	t.Helper()
	m, err := decodeMessage([]byte(member[12:]))
	if err != nil {
		t.Fatalf("stored member %q: %v", member, err)
	}
	return m
}

// inbox is an attached channel's deliveries.
type inbox chan canal.Message

func (in inbox) deliver(m canal.Message) bool {
	select {
	case in <- m:
		return true
	default:
		return false
	}
}

func (in inbox) next(t testing.TB) canal.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("Go consumer received nothing")
	}
	return nil
}

func (in inbox) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("Go consumer received %v; want nothing", m)
	case <-time.After(d):
	}
}

func attachInbox(t testing.TB, l canal.Layer) (string, inbox) {
	t.Helper()
	in := make(inbox, 64)
	name, detach, err := l.Attach(context.Background(), "", in.deliver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(detach)
	return name, in
}

func recvWithin(t testing.TB, l canal.Layer, channel string) canal.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := l.Receive(ctx, channel)
	if err != nil {
		t.Fatalf("Receive(%q): %v", channel, err)
	}
	return m
}

func TestNewRedisOptions(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		opts    RedisOptions
		wantErr string
		unavail bool
	}{
		{name: "defaults", opts: RedisOptions{}},
		{name: "all set", opts: RedisOptions{Prefix: "p", Expiry: time.Second, GroupExpiry: time.Minute, Capacity: 5,
			ChannelCapacity: []Capacity{{Pattern: "http.*", Size: 10}}, SymmetricEncryptionKeys: []string{"k"},
			SerializerFormat: "json", RandomPrefixLength: 4}},
		{name: "negative expiry", opts: RedisOptions{Expiry: -1}, wantErr: "Expiry"},
		{name: "negative group expiry", opts: RedisOptions{GroupExpiry: -1}, wantErr: "GroupExpiry"},
		{name: "negative capacity", opts: RedisOptions{Capacity: -1}, wantErr: "Capacity"},
		{name: "bad glob", opts: RedisOptions{ChannelCapacity: []Capacity{{Pattern: "[", Size: 1}}}, wantErr: "pattern"},
		{name: "zero pattern size", opts: RedisOptions{ChannelCapacity: []Capacity{{Pattern: "a*", Size: 0}}}, wantErr: "positive"},
		{name: "serializer", opts: RedisOptions{SerializerFormat: "pickle"}, wantErr: "SerializerFormat"},
		{name: "negative receive buffer", opts: RedisOptions{ReceiveBuffer: -1}, wantErr: "ReceiveBuffer"},
		{name: "receive buffer over 1 GiB", opts: RedisOptions{ReceiveBuffer: 1<<30 + 1}, wantErr: "ReceiveBuffer"},
		{name: "bad scheme", opts: RedisOptions{Hosts: []string{"http://u:hunter2@127.0.0.1:1"}}, wantErr: "bad URL"},
		{name: "unreachable", opts: RedisOptions{Hosts: []string{"redis://:hunter2@127.0.0.1:1/0"}}, wantErr: "connect", unavail: true},
		{name: "second host unreachable", opts: RedisOptions{Hosts: []string{srv.URL(), "redis://127.0.0.1:1"}},
			wantErr: "host 1", unavail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			if len(opts.Hosts) == 0 {
				opts.Hosts = []string{srv.URL()}
			}
			opts.ClientOptions = fastClient
			l, err := NewRedis(ctx, opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				l.Close(ctx)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "layers: ") {
				t.Fatalf("err = %v; want a layers: error mentioning %q", err, tt.wantErr)
			}
			if errors.Is(err, canal.ErrUnavailable) != tt.unavail {
				t.Fatalf("err = %v; ErrUnavailable %v", err, tt.unavail)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q reveals the password", err)
			}
		})
	}

	l := newRedisLayer(t, srv, RedisOptions{})
	if l.prefix != "asgi" || l.expirySec != 60 || l.groupExpiry != 86400 || l.capacity != 100 || l.randLen != 12 ||
		l.json || l.crypter != nil {
		t.Errorf("defaults: %q %d %d %d %d %v %v", l.prefix, l.expirySec, l.groupExpiry, l.capacity, l.randLen, l.json, l.crypter)
	}
	l2 := newRedisLayer(t, srv, RedisOptions{Expiry: 1500 * time.Millisecond, GroupExpiry: time.Millisecond, RandomPrefixLength: -1})
	if l2.expirySec != 2 || l2.groupExpiry != 1 || l2.randLen != 0 {
		t.Errorf("rounding: expiry %d, group expiry %d, random prefix %d", l2.expirySec, l2.groupExpiry, l2.randLen)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewRedis(cancelled, RedisOptions{Hosts: []string{srv.URL()}}); !errors.Is(err, context.Canceled) {
		t.Errorf("NewRedis with a cancelled ctx: %v", err)
	}
	pats := []Capacity{{Pattern: "a*", Size: 1}}
	l3 := newRedisLayer(t, srv, RedisOptions{ChannelCapacity: pats})
	pats[0].Size = 50
	if l3.patterns[0].Size != 1 {
		t.Error("ChannelCapacity not copied")
	}
}

func TestRedisNameValidation(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	ctx := context.Background()
	for _, name := range []string{"", strings.Repeat("a", 100), "has space", "é", "!local", "a!b!c", "slash/no"} {
		_, recvErr := l.Receive(ctx, name)
		for op, err := range map[string]error{
			"Send":         l.Send(ctx, name, msg("x")),
			"Receive":      recvErr,
			"GroupAdd":     l.GroupAdd(ctx, "g", name),
			"GroupDiscard": l.GroupDiscard(ctx, "g", name),
		} {
			if !errors.Is(err, canal.ErrInvalidName) || !strings.HasPrefix(err.Error(), "layers: ") {
				t.Errorf("%s(%q): %v; want layers: … ErrInvalidName", op, name, err)
			}
		}
	}
	for _, group := range []string{"", strings.Repeat("g", 100), "room!x", "ünï"} {
		for op, err := range map[string]error{
			"GroupAdd":     l.GroupAdd(ctx, group, "chan"),
			"GroupDiscard": l.GroupDiscard(ctx, group, "chan"),
			"GroupSend":    l.GroupSend(ctx, group, msg("x")),
		} {
			if !errors.Is(err, canal.ErrInvalidName) {
				t.Errorf("%s(%q): %v", op, group, err)
			}
		}
	}
	nop := func(canal.Message) bool { return true }
	// "<prefix>.<32 hex>!<32 hex>" must fit in 99 characters: prefixes up to 33.
	for _, prefix := range []string{"bad prefix", "a!b", strings.Repeat("p", 34), "é"} {
		if _, err := l.NewChannel(ctx, prefix); !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("NewChannel(%q) err = %v", prefix, err)
		}
		if _, _, err := l.Attach(ctx, prefix, nop); !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("Attach(%q) err = %v", prefix, err)
		}
	}
	if ch, err := l.NewChannel(ctx, strings.Repeat("p", 33)); err != nil || len(ch) != 99 {
		t.Errorf("NewChannel with a 33-byte prefix = %q, %v", ch, err)
	}
	if _, _, err := l.Attach(ctx, "", nil); err == nil {
		t.Error("Attach with nil deliver: no error")
	}
	if len(l.listeners) != 0 {
		t.Errorf("failed Attach left %d listeners", len(l.listeners))
	}
}

func TestRedisChannelNames(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	other := newRedisLayer(t, srv, RedisOptions{})
	ctx := context.Background()
	re := regexp.MustCompile(`^specific\.([0-9a-f]{32})![0-9a-f]{32}$`)
	seen := map[string]bool{}
	nop := func(canal.Message) bool { return true }
	for i := range 200 {
		var ch string
		var err error
		if i%2 == 0 {
			ch, err = l.NewChannel(ctx, "")
		} else {
			ch, _, err = l.Attach(ctx, "", nop)
		}
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindStringSubmatch(ch)
		if m == nil || m[1] != l.ProcessID() || seen[ch] || ValidChannelName(ch) != nil {
			t.Fatalf("bad or duplicate name %q", ch)
		}
		seen[ch] = true
		if l.isAttachName(ch) != (i%2 == 1) {
			t.Fatalf("%q: isAttachName = %v", ch, !(i%2 == 1))
		}
		if other.ownChannel(ch) || other.isAttachName(ch) {
			t.Fatalf("another layer claims %q", ch)
		}
	}
	if other.ProcessID() == l.ProcessID() {
		t.Fatal("two layers share a process id")
	}
	ch, err := l.NewChannel(ctx, "chat.worker")
	if err != nil || !strings.HasPrefix(ch, "chat.worker."+l.ProcessID()+"!") {
		t.Fatalf("NewChannel(prefix) = %q, %v", ch, err)
	}
	// One queue key per prefix; the loop watches it.
	keys := *l.keys.Load()
	if len(keys) != 2 || keys[0] != "asgispecific."+l.ProcessID()+"!" || keys[1] != "asgichat.worker."+l.ProcessID()+"!" {
		t.Fatalf("watched keys %q", keys)
	}
	lsend(t, l, ch, msg("hello"))
	if got := recvWithin(t, l, ch); got.Type() != "hello" {
		t.Fatalf("got %v", got)
	}
	// Receive refuses other processes' channels.
	foreign, _ := other.NewChannel(ctx, "")
	if _, err := l.Receive(ctx, foreign); !errors.Is(err, canal.ErrInvalidName) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Receive on another process's channel: %v", err)
	}
}

func TestRedisMessageValidation(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	ctx := context.Background()
	l.GroupAdd(ctx, "group", "member")
	tests := []struct {
		name string
		msg  canal.Message
	}{
		{"nil message", nil},
		{"no type", canal.Message{"text": "hi"}},
		{"non-string type", canal.Message{"type": 3}},
		{"empty type", msg("")},
		{"private underscore", msg("_secret")},
		{"private dot", msg(".secret")},
		{"reserved key", msg("x", "__asgi_channel__", "a!b")},
		{"unencodable value", msg("x", "when", time.Now())},
		{"invalid UTF-8", msg("x", "text", "\xff")},
		{"non-string map keys", msg("x", "m", map[int]string{1: "a"})},
	}
	for _, tt := range tests {
		for op, err := range map[string]error{
			"Send":        l.Send(ctx, "worker", tt.msg),
			"SendSpecial": l.Send(ctx, "specific.abc!def", tt.msg),
			"GroupSend":   l.GroupSend(ctx, "group", tt.msg),
		} {
			if !errors.Is(err, canal.ErrInvalidMessage) || !strings.HasPrefix(err.Error(), "layers: ") {
				t.Errorf("%s/%s: err = %v", tt.name, op, err)
			}
		}
	}
	c := srv.Client(t)
	if keys, _ := c.Do(ctx, c.B().Keys().Pattern("*").Build()).AsStrSlice(); len(keys) != 1 {
		t.Errorf("invalid messages reached Redis: keys %q", keys)
	}
}

// TestRedisWireFormat checks what the layer stores, key by key, against
// channels-redis-wire.md.
func TestRedisWireFormat(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	c := srv.Client(t)
	ctx := context.Background()

	// A normal channel: "asgi<name>", no __asgi_channel__, scored by send time.
	before := nowf()
	lsend(t, l, "worker", msg("job", "n", 1))
	members := zmembers(t, c, "asgiworker")
	if len(members) != 1 {
		t.Fatalf("asgiworker holds %d members", len(members))
	}
	if m := decodeStored(t, members[0]); !msgpackEqual(m, map[string]any{"type": "job", "n": int64(1)}) {
		t.Fatalf("stored %v", m)
	}
	score, err := c.Do(ctx, c.B().Zscore().Key("asgiworker").Member(members[0]).Build()).AsFloat64()
	if err != nil || score < before-0.001 || score > nowf()+0.001 || score == math.Trunc(score) {
		t.Fatalf("score %v (%v); want the send time in float seconds", score, err)
	}
	if n := ttl(t, c, "asgiworker"); n < 58 || n > 60 {
		t.Fatalf("TTL %d; want the 60 s expiry", n)
	}
	// Identical messages are two members, thanks to the random prefix.
	lsend(t, l, "worker", msg("job", "n", 1))
	if m := zmembers(t, c, "asgiworker"); len(m) != 2 || m[0][:12] == m[1][:12] ||
		!msgpackEqual(decodeStored(t, m[0]), decodeStored(t, m[1])) {
		t.Fatalf("members %q", m)
	}

	// A process-local channel: its process's key, the full name as a string.
	lsend(t, l, "specific.abc!def", msg("direct"))
	members = zmembers(t, c, "asgispecific.abc!")
	if len(members) != 1 {
		t.Fatalf("asgispecific.abc! holds %q", members)
	}
	if m := decodeStored(t, members[0]); !msgpackEqual(m, map[string]any{"type": "direct", "__asgi_channel__": "specific.abc!def"}) {
		t.Fatalf("stored %v", m)
	}

	// Groups: "asgi:group:<name>" scored by join time, expiring after a day.
	for _, ch := range []string{"specific.abc!x", "specific.abc!y", "worker", "specific.zzz!q"} {
		if err := l.GroupAdd(ctx, "room", ch); err != nil {
			t.Fatal(err)
		}
	}
	if m := zmembers(t, c, "asgi:group:room"); len(m) != 4 {
		t.Fatalf("group members %q", m)
	}
	if n := ttl(t, c, "asgi:group:room"); n < 86398 || n > 86400 {
		t.Fatalf("group TTL %d", n)
	}
	c.Do(ctx, c.B().Del().Key("asgispecific.abc!", "asgiworker").Build())
	if err := l.GroupSend(ctx, "room", msg("chat.message", "text", "hi")); err != nil {
		t.Fatal(err)
	}
	// One copy per key, listing that key's members.
	want := map[string][]string{
		"asgispecific.abc!": {"specific.abc!x", "specific.abc!y"},
		"asgiworker":        {"worker"},
		"asgispecific.zzz!": {"specific.zzz!q"},
	}
	for key, channels := range want {
		members := zmembers(t, c, key)
		if len(members) != 1 {
			t.Fatalf("%s holds %d members", key, len(members))
		}
		m := decodeStored(t, members[0])
		list, ok := m[asgiChannelKey].([]any)
		if !ok || m.String("text") != "hi" || len(m) != 3 {
			t.Fatalf("%s: stored %v", key, m)
		}
		var got []string
		for _, e := range list {
			got = append(got, e.(string))
		}
		if strings.Join(got, ",") != strings.Join(channels, ",") {
			t.Fatalf("%s: __asgi_channel__ = %q; want %q", key, got, channels)
		}
		if n := ttl(t, c, key); n < 58 || n > 60 {
			t.Fatalf("%s: TTL %d", key, n)
		}
	}

	// Other random prefix lengths.
	for _, n := range []int{4, -1} {
		l := newRedisLayer(t, srv, RedisOptions{RandomPrefixLength: n, Prefix: fmt.Sprintf("rp%d:", n)})
		lsend(t, l, "w", msg("x"))
		key := fmt.Sprintf("rp%d:w", n)
		m := zmembers(t, c, key)
		want, _ := appendMsgpack(nil, map[string]any{"type": "x"})
		if len(m) != 1 || m[0][max(n, 0):] != string(want) {
			t.Fatalf("prefix length %d: %q", n, m)
		}
		if got := recvWithin(t, l, "w"); got.Type() != "x" {
			t.Fatalf("got %v", got)
		}
	}
}

// TestRedisSlowConsumer checks that a consumer whose queue is full costs only its own
// messages: the loop drops them and keeps delivering to the others at once.
func TestRedisSlowConsumer(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{Capacity: 1000})
	ctx := context.Background()
	slow := make(inbox, 1) // never drained
	slowName, _, _ := l.Attach(ctx, "", slow.deliver)
	fast, in := attachInbox(t, l)
	l.GroupAdd(ctx, "g", slowName)
	l.GroupAdd(ctx, "g", fast)
	const n = 50
	for i := range n {
		if err := l.GroupSend(ctx, "g", msg("tick", "i", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if got := in.next(t); got["i"] != int64(i) {
			t.Fatalf("fast consumer got %v at %d", got, i)
		}
	}
	waitFor(t, "the drops", func() bool { return l.Stats().Dropped == n-1 })
	if st := l.Stats(); st.Delivered != n+1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRedisPanickingDeliver checks that a deliver func that panics costs its message,
// not the receive loop.
func TestRedisPanickingDeliver(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	ctx := context.Background()
	bad, _, err := l.Attach(ctx, "", func(canal.Message) bool { panic("boom") })
	if err != nil {
		t.Fatal(err)
	}
	good, in := attachInbox(t, l)
	l.GroupAdd(ctx, "g", bad)
	l.GroupAdd(ctx, "g", good)
	l.GroupSend(ctx, "g", msg("one"))
	lsend(t, l, bad, msg("two"))
	lsend(t, l, good, msg("three"))
	if in.next(t).Type() != "one" || in.next(t).Type() != "three" {
		t.Fatal("wrong messages")
	}
	waitFor(t, "the drops", func() bool { return l.Stats().Dropped == 2 })
}

// TestRedisReentrantDeliver checks that deliver, running on the receive loop, may
// call back into the layer.
func TestRedisReentrantDeliver(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	ctx := context.Background()
	var name string
	var detach func()
	var calls atomic.Int32
	done := make(chan struct{})
	name, detach, err := l.Attach(ctx, "", func(m canal.Message) bool {
		calls.Add(1)
		if m.Type() == "nested" {
			close(done)
			return true
		}
		if err := l.GroupDiscard(ctx, "g", name); err != nil {
			t.Error(err)
		}
		l.GroupAdd(ctx, "other", name)
		l.GroupSend(ctx, "other", canal.Message{"type": "nested"}) // comes back to this func
		l.Send(ctx, "log", m)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	l.GroupAdd(ctx, "g", name)
	l.GroupSend(ctx, "g", msg("go"))
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("nested message never delivered")
	}
	if got := recvWithin(t, l, "log"); got.Type() != "go" {
		t.Fatalf("got %v", got)
	}
	if calls.Load() != 2 {
		t.Errorf("deliver called %d times", calls.Load())
	}
}

// TestRedisMalformed injects members that cannot be read into a process queue and a
// normal channel: each is skipped, counted and logged without its contents, and the
// loop goes on.
func TestRedisMalformed(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	var logs canaltest.LogBuffer
	l := newRedisLayer(t, srv, RedisOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := srv.Client(t)
	ch, in := attachInbox(t, l)
	key := "asgi" + nonLocal(ch)
	const secret = "SECRET-PAYLOAD"
	pre := []byte("0123456789ab")
	bad := map[string][]byte{
		"shorter than the prefix": []byte("tiny"),
		"no random prefix":        mustMsgpack(t, map[string]any{"__asgi_channel__": ch, "type": "x", "s": secret}),
		"bad msgpack":             append(bytes.Clone(pre), 0xc1, 's', 'e', 'c'),
		"int key":                 append(bytes.Clone(pre), unhex("8201a474797065a178")...),
		"non-string type":         stored(t, map[string]any{"type": 5, "__asgi_channel__": ch, "s": secret}),
		"private type":            stored(t, map[string]any{"type": "_x", "__asgi_channel__": ch, "s": secret}),
		"no type":                 stored(t, map[string]any{"__asgi_channel__": ch, "s": secret}),
		"no __asgi_channel__":     stored(t, map[string]any{"type": "x", "s": secret}),
		"__asgi_channel__ int":    stored(t, map[string]any{"type": "x", "__asgi_channel__": 42, "s": secret}),
		"timestamp":               withTimestamp(t, pre, ch),
		"trailing bytes":          append(stored(t, map[string]any{"type": "x", "__asgi_channel__": ch}), 0xc0),
		"not a map":               append(bytes.Clone(pre), unhex("a3616263")...),
		"undecryptable":           append(bytes.Clone(pre), "gAAAAAB"+secret...),
	}
	for _, m := range bad {
		zadd(t, c, key, nowf(), m)
	}
	// One good message after them, and one whose list has a bad entry next to a good one.
	zadd(t, c, key, nowf()+1, stored(t, map[string]any{"type": "good", "__asgi_channel__": []any{ch, 7}}))
	if got := in.next(t); got.Type() != "good" {
		t.Fatalf("got %v", got)
	}
	waitFor(t, "the count", func() bool { return l.Stats().Malformed == uint64(len(bad))+1 })
	lsend(t, l, ch, msg("after"))
	if got := in.next(t); got.Type() != "after" {
		t.Fatalf("got %v", got)
	}
	in.none(t, 50*time.Millisecond)

	// On a normal channel: skipped by Receive.
	zadd(t, c, "asgiworker", nowf(), bad["bad msgpack"])
	zadd(t, c, "asgiworker", nowf()+1, stored(t, map[string]any{"type": "private?", "s": secret})[:20])
	zadd(t, c, "asgiworker", nowf()+2, stored(t, map[string]any{"type": "ok"}))
	if got := recvWithin(t, l, "worker"); got.Type() != "ok" {
		t.Fatalf("got %v", got)
	}
	if n := l.Stats().Malformed; n != uint64(len(bad))+3 {
		t.Fatalf("malformed %d", n)
	}
	out := logs.String()
	if !strings.Contains(out, "skipped a message") {
		t.Fatalf("nothing logged: %q", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the log shows message contents:\n%s", out)
	}
	if lines := strings.Count(out, "\n"); lines > 3 {
		t.Errorf("%d log lines for a burst; want them rate-limited", lines)
	}
}

// withTimestamp is a stored message for ch with a msgpack.Timestamp value.
func withTimestamp(t testing.TB, pre []byte, ch string) []byte {
	t.Helper()
	b := append(bytes.Clone(pre), 0x83)
	for _, s := range []string{"type", "x", asgiChannelKey, ch, "t"} {
		b, _ = appendString(b, s)
	}
	return append(b, unhex("d6ff00000001")...)
}

func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := appendMsgpack(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRedisReceiveContext(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	local, _ := l.NewChannel(context.Background(), "")
	for _, ch := range []string{"idle", local} {
		t.Run("cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := l.Receive(ctx, ch)
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Fatalf("cancellation took %v", d)
				}
			case <-time.After(wait):
				t.Fatal("Receive ignored cancellation")
			}
		})
		t.Run("already done", func(t *testing.T) {
			lsend(t, l, ch, msg("x"))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := l.Receive(ctx, ch); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
			if err := l.Send(ctx, ch, msg("x")); !errors.Is(err, context.Canceled) {
				t.Fatalf("Send with a done ctx: %v", err)
			}
			if got := recvWithin(t, l, ch); got.Type() != "x" { // left for the next receiver
				t.Fatal(got)
			}
		})
	}
}

// leakOpts ignores the goroutines that outlive a test on purpose: canaltest's
// redis-server waiters, which its cleanup ends, and those already running.
func leakOpts() []goleak.Option {
	return []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/canal-rt/canal/canaltest.(*Redis).startLocked.func1")}
}

// TestRedisUnavailable kills Redis under the layer: calls fail fast with
// canal.ErrUnavailable, and the receive loop picks up again after a restart.
func TestRedisUnavailable(t *testing.T) {
	srv := canaltest.StartRedis(t)
	defer goleak.VerifyNone(t, leakOpts()...)
	var logs canaltest.LogBuffer
	l, err := NewRedis(context.Background(), RedisOptions{Hosts: []string{srv.URL()}, ClientOptions: fastClient,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx := context.Background()
	a, in := attachInbox(t, l)
	lsend(t, l, a, msg("before"))
	in.next(t)

	srv.Kill()
	const bound = 2 * time.Second
	calls := map[string]func(ctx context.Context) error{
		"Send":         func(ctx context.Context) error { return l.Send(ctx, "w", msg("x")) },
		"SendLocal":    func(ctx context.Context) error { return l.Send(ctx, a, msg("x")) },
		"GroupAdd":     func(ctx context.Context) error { return l.GroupAdd(ctx, "g", a) },
		"GroupDiscard": func(ctx context.Context) error { return l.GroupDiscard(ctx, "g", a) },
		"GroupSend":    func(ctx context.Context) error { return l.GroupSend(ctx, "g", msg("x")) },
		"Flush":        func(ctx context.Context) error { return l.Flush(ctx) },
		"Receive":      func(ctx context.Context) error { _, err := l.Receive(ctx, "w"); return err },
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(ctx, bound)
		start := time.Now()
		err := call(ctx)
		elapsed := time.Since(start)
		cancel()
		if !errors.Is(err, canal.ErrUnavailable) || !strings.HasPrefix(err.Error(), "layers: ") {
			t.Errorf("%s with Redis down: %v; want canal.ErrUnavailable", name, err)
		}
		if elapsed > bound+500*time.Millisecond {
			t.Errorf("%s with Redis down took %v", name, elapsed)
		}
	}
	// Making channels needs no Redis.
	b, inB := attachInbox(t, l)

	time.Sleep(300 * time.Millisecond) // let the loop fail and back off
	srv.Restart()
	// The server came back empty: memberships are gone, the loop resumes.
	waitFor(t, "a send after the restart", func() bool { return l.Send(ctx, b, msg("after")) == nil })
	if m := inB.next(t); m.Type() != "after" {
		t.Fatalf("got %v", m)
	}
	lsend(t, l, a, msg("after"))
	if m := in.next(t); m.Type() != "after" {
		t.Fatalf("got %v", m)
	}
	lsend(t, l, "w", msg("work"))
	if m := recvWithin(t, l, "w"); m.Type() != "work" {
		t.Fatalf("got %v", m)
	}
	if n := l.Stats().Reconnects; n != 1 {
		t.Errorf("Reconnects = %d; want 1", n)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "cannot reach Redis") || !strings.Contains(out, "resumed") {
		t.Errorf("log:\n%s", out)
	}

	// NewRedis with Redis down.
	srv.Kill()
	_, err = NewRedis(ctx, RedisOptions{Hosts: []string{srv.URL()}, ClientOptions: fastClient})
	if !errors.Is(err, canal.ErrUnavailable) {
		t.Errorf("NewRedis with Redis down: %v", err)
	}
}

// TestRedisHung pauses Redis: the caller's deadline bounds each call.
func TestRedisHung(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{})
	pauser := srv.Client(t)
	if err := pauser.Do(t.Context(), pauser.B().ClientPause().Timeout(1000).All().Build()).Error(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Send(ctx, "w", msg("x"))
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("Send took %v under a 200 ms deadline", elapsed)
	}
	if !errors.Is(err, canal.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a hung Redis: %v; want ErrUnavailable and DeadlineExceeded", err)
	}
}

// TestRedisShards runs the layer on three servers and checks where every key lands.
func TestRedisShards(t *testing.T) {
	t.Parallel()
	srvs := []*canaltest.Redis{canaltest.StartRedis(t), canaltest.StartRedis(t), canaltest.StartRedis(t)}
	var urls []string
	var clients []rueidis.Client
	for _, s := range srvs {
		urls = append(urls, s.URL())
		clients = append(clients, s.Client(t))
	}
	l := newRedisLayer(t, nil, RedisOptions{Hosts: urls})
	other := newRedisLayer(t, nil, RedisOptions{Hosts: urls})
	ctx := context.Background()
	exists := func(host int, key string) bool {
		n, _ := clients[host].Do(ctx, clients[host].B().Exists().Key(key).Build()).AsInt64()
		return n == 1
	}

	// Group keys on the group's host.
	for _, g := range []string{"room", "chat_lobby", "a", "b", "c"} {
		if err := l.GroupAdd(ctx, g, "specific.abc!x"); err != nil {
			t.Fatal(err)
		}
		h := shardIndex(g, 3)
		for i := range 3 {
			if exists(i, "asgi:group:"+g) != (i == h) {
				t.Fatalf("group %s on host %d; want only %d", g, i, h)
			}
		}
	}
	// Process queues on the host of their non-local name (3651 → host 2).
	lsend(t, l, "specific.abc!x", msg("x"))
	if !exists(shardIndex("specific.abc!", 3), "asgispecific.abc!") || shardIndex("specific.abc!", 3) != 2 {
		t.Fatal("process queue on the wrong host")
	}
	l.GroupSend(ctx, "room", msg("x"))
	if n := len(zmembers(t, clients[2], "asgispecific.abc!")); n != 2 {
		t.Fatalf("group send put %d messages on the queue's host", n)
	}
	// Normal channels go round robin and are received from any host.
	for i := range 6 {
		lsend(t, l, "jobs", msg("job", "i", i))
	}
	for i := range 3 {
		if n := len(zmembers(t, clients[i], "asgijobs")); n != 2 {
			t.Fatalf("host %d holds %d jobs; want 2", i, n)
		}
	}
	seen := map[int64]bool{}
	for range 6 {
		seen[recvWithin(t, other, "jobs")["i"].(int64)] = true
	}
	if len(seen) != 6 {
		t.Fatalf("received %v", seen)
	}

	// Go to Go across hosts, by group and directly.
	a, in := attachInbox(t, l)
	b, inB := attachInbox(t, other)
	for _, g := range []string{"room", "chat_lobby", "a"} {
		other.GroupAdd(ctx, g, a)
		l.GroupAdd(ctx, g, b)
		other.GroupSend(ctx, g, msg("g", "g", g))
		if m := in.next(t); m.String("g") != g {
			t.Fatal(m)
		}
		if m := inB.next(t); m.String("g") != g {
			t.Fatal(m)
		}
	}
	// Django's direct send hashes the full name (channels_redis issue 221): the loop
	// watches the process key on every host, so such a message still arrives.
	key := "asgi" + nonLocal(a)
	for h := range 3 {
		zadd(t, clients[h], key, nowf(), stored(t, map[string]any{"type": "via", "host": h, "__asgi_channel__": a}))
		if m := in.next(t); m["host"] != int64(h) {
			t.Fatalf("got %v", m)
		}
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if n, _ := clients[i].Do(ctx, clients[i].B().Dbsize().Build()).AsInt64(); n != 0 {
			t.Fatalf("host %d holds %d keys after Flush", i, n)
		}
	}
}

func TestRedisEncryption(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	ctx := context.Background()
	oldOnly := newRedisLayer(t, srv, RedisOptions{SymmetricEncryptionKeys: []string{"old"}})
	rotated := newRedisLayer(t, srv, RedisOptions{SymmetricEncryptionKeys: []string{"new", "old"}})
	stranger := newRedisLayer(t, srv, RedisOptions{SymmetricEncryptionKeys: []string{"other"}})
	plain := newRedisLayer(t, srv, RedisOptions{})
	a, inOld := attachInbox(t, oldOnly)
	b, inRot := attachInbox(t, rotated)

	lsend(t, oldOnly, b, allTypesGoNative()) // old key → the rotated reader
	sameMessage(t, inRot.next(t), allTypesGo())
	for _, l := range []*Redis{oldOnly, rotated} {
		l.GroupAdd(ctx, "g", a)
		l.GroupAdd(ctx, "g", b)
	}
	rotated.GroupSend(ctx, "g", msg("new key")) // new key: oldOnly cannot read it
	if m := inRot.next(t); m.Type() != "new key" {
		t.Fatal(m)
	}
	waitFor(t, "the skip", func() bool { return oldOnly.Stats().Malformed == 1 })
	inOld.none(t, 0)
	lsend(t, stranger, b, msg("x"))
	lsend(t, plain, b, msg("x"))
	waitFor(t, "the skips", func() bool { return rotated.Stats().Malformed == 2 })
	lsend(t, rotated, "w", msg("work"))
	lexpectEmpty(t, oldOnly, "w", 300*time.Millisecond) // skipped as malformed
	if n := oldOnly.Stats().Malformed; n != 2 {
		t.Fatalf("malformed %d; want 2", n)
	}
}

func TestRedisJSON(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{SerializerFormat: "json"})
	c := srv.Client(t)
	ctx := context.Background()
	m := canal.Message{"type": "j", "s": "é\"\\\n\x01", "i": 1 << 40, "neg": -3, "f": 2.0, "f2": 1e16, "f3": 1.5e-7,
		"b": true, "n": nil, "l": []any{1, "x", []string{"y"}}, "m": map[string]any{"k": map[string]int{"z": 1}},
		"u": uint64(math.MaxUint64)}
	want := canal.Message{"type": "j", "s": "é\"\\\n\x01", "i": int64(1 << 40), "neg": int64(-3), "f": 2.0, "f2": 1e16,
		"f3": 1.5e-7, "b": true, "n": nil, "l": []any{int64(1), "x", []any{"y"}},
		"m": map[string]any{"k": map[string]any{"z": int64(1)}}, "u": uint64(math.MaxUint64)}
	a, in := attachInbox(t, l)
	l.GroupAdd(ctx, "g", a)
	l.GroupAdd(ctx, "g", "specific.other!x")
	if err := l.GroupSend(ctx, "g", m); err != nil {
		t.Fatal(err)
	}
	sameMessage(t, in.next(t), want)
	lsend(t, l, "w", m)
	sameMessage(t, recvWithin(t, l, "w"), want)
	stored := zmembers(t, c, "asgispecific.other!")
	if len(stored) != 1 || !strings.HasPrefix(stored[0][12:], "{") || !strings.Contains(stored[0], `"__asgi_channel__": ["specific.other!x"]`) {
		t.Fatalf("stored %q", stored)
	}
	for _, bad := range []any{[]byte("x"), math.NaN(), math.Inf(-1), "\xff", map[int]int{}} {
		if err := l.Send(ctx, "w", msg("x", "v", bad)); !errors.Is(err, canal.ErrInvalidMessage) {
			t.Errorf("Send(%v) = %v", bad, err)
		}
	}
	for _, in := range []string{`[]`, `{"type": "x"} x`, `{"type": 1e999}`, `{"i": 123456789012345678901234567890}`, `{`} {
		if _, err := decodeJSONMessage([]byte(in)); !errors.Is(err, errJSON) {
			t.Errorf("decode %s: %v", in, err)
		}
	}
}

// TestRedisConcurrentGroups churns channels through groups while messages fan out,
// for the race detector.
func TestRedisConcurrentGroups(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{Capacity: 50})
	other := newRedisLayer(t, srv, RedisOptions{Capacity: 50})
	ctx := context.Background()
	var delivered atomic.Int64
	deliver := func(canal.Message) bool { delivered.Add(1); return true }
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			layer := []*Redis{l, other}[w%2]
			for i := range 40 {
				name, detach, err := layer.Attach(ctx, "", deliver)
				if err != nil {
					t.Error(err)
					return
				}
				group := fmt.Sprintf("g%d", i%3)
				layer.GroupAdd(ctx, group, name)
				layer.GroupSend(ctx, group, msg("tick"))
				layer.Send(ctx, name, msg("direct"))
				if i%2 == 0 {
					layer.GroupDiscard(ctx, group, name)
				}
				if i%10 == 9 {
					detach()
				}
				if i == 20 && w == 0 {
					layer.Flush(ctx)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 60 {
			l.GroupSend(ctx, fmt.Sprintf("g%d", i%3), msg("fanout"))
			ch, _ := other.NewChannel(ctx, "")
			l.Send(ctx, ch, msg("x"))
			rctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			other.Receive(rctx, ch)
			cancel()
		}
	})
	wg.Wait()
	waitFor(t, "deliveries", func() bool { return delivered.Load() > 0 })
}

// TestRedisInvalidGroupMember: a member that is not UTF-8, written to a group's key by
// something other than a channel layer, costs that member only: GroupSend reaches the
// others, counts it and logs one line without its bytes.
func TestRedisInvalidGroupMember(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"msgpack", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			srv := canaltest.StartRedis(t)
			var logs canaltest.LogBuffer
			l := newRedisLayer(t, srv, RedisOptions{SerializerFormat: format, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			c := srv.Client(t)
			ctx := context.Background()
			a, inA := attachInbox(t, l)
			b, inB := attachInbox(t, l)
			for _, ch := range []string{a, b} {
				if err := l.GroupAdd(ctx, "room", ch); err != nil {
					t.Fatal(err)
				}
			}
			const marker = "HOSTILE"
			for _, bad := range [][]byte{[]byte("specific.\xff\xfe!" + marker), []byte("\xc3(" + marker)} {
				zadd(t, c, "asgi:group:room", nowf(), bad)
			}
			for i := range 2 {
				if err := l.GroupSend(ctx, "room", msg("hello")); err != nil {
					t.Fatalf("GroupSend %d: %v", i, err)
				}
				for _, in := range []inbox{inA, inB} {
					if got := in.next(t); got.Type() != "hello" {
						t.Fatalf("got %v", got)
					}
				}
			}
			if n := l.Stats().InvalidMembers; n != 4 {
				t.Fatalf("InvalidMembers %d; want 4 (2 members, 2 sends)", n)
			}
			out := logs.String()
			if n := strings.Count(out, "not UTF-8"); n != 1 {
				t.Errorf("%d log lines; want 1:\n%s", n, out)
			}
			if strings.Contains(out, marker) || !strings.Contains(out, "group=room") {
				t.Errorf("log shows the member or lacks the group:\n%s", out)
			}
			if got := len(zmembers(t, c, "asgi:group:room")); got != 4 {
				t.Errorf("group holds %d members; want the 2 valid and the 2 foreign ones left in place", got)
			}
		})
	}
}
