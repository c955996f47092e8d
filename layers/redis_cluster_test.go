package layers

// The layers' semantics, run on every Redis deployment they support: one server and a
// three-master Redis Cluster started by canaltest. Each test body takes the backend
// as a parameter and a prefix of its own, so the bodies share one server (one
// cluster) and run in parallel.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// redisBackend is a Redis deployment the layer tests run on.
type redisBackend struct {
	name    string
	single  *canaltest.Redis        // one server, or
	cluster *canaltest.RedisCluster // a cluster
	client  rueidis.Client          // for raw checks: a plain client or a cluster client
	nodes   []rueidis.Client        // a plain client per server, for KEYS and DBSIZE
	seq     atomic.Int32
}

// startSingle and startCluster start a backend, stopped by t's cleanup.
func startSingle(t *testing.T) *redisBackend {
	srv := canaltest.StartRedis(t)
	b := &redisBackend{name: "single", single: srv, client: srv.Client(t)}
	b.nodes = []rueidis.Client{b.client}
	return b
}

func startCluster(t *testing.T) *redisBackend {
	cl := canaltest.StartRedisCluster(t, 3)
	b := &redisBackend{name: "cluster", cluster: cl, client: cl.Client(t, fastClient)}
	for i := range cl.Nodes() {
		b.nodes = append(b.nodes, cl.NodeClient(t, i))
	}
	return b
}

// prefix returns a core layer prefix no other test of this backend uses (and none is
// a prefix of another: Flush deletes "<prefix>*").
func (b *redisBackend) prefix() string { return fmt.Sprintf("t%03d:", b.seq.Add(1)) }

// psPrefix is prefix for the Pub/Sub layer, whose prefix starts channel names and so
// must be made of name characters.
func (b *redisBackend) psPrefix() string { return fmt.Sprintf("p%03d", b.seq.Add(1)) }

// core returns a layer on the backend, closed by t's cleanup.
func (b *redisBackend) core(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	if b.cluster != nil {
		opts.Cluster = b.cluster.Addrs()
	}
	return newRedisLayer(t, b.single, opts)
}

// pubsub returns a Pub/Sub layer on the backend, closed by t's cleanup.
func (b *redisBackend) pubsub(t testing.TB, opts RedisPubSubOptions) *RedisPubSub {
	t.Helper()
	if b.cluster != nil {
		opts.Cluster = b.cluster.Addrs()
	}
	return newPubSubLayer(t, b.single, opts)
}

// keys returns the keys matching pattern on every server, sorted.
func (b *redisBackend) keys(t testing.TB, pattern string) []string {
	t.Helper()
	var all []string
	for i, c := range b.nodes {
		k, err := c.Do(context.Background(), c.B().Keys().Pattern(pattern).Build()).AsStrSlice()
		if err != nil {
			t.Fatalf("KEYS on node %d: %v", i, err)
		}
		all = append(all, k...)
	}
	slices.Sort(all)
	return all
}

func (b *redisBackend) exists(t testing.TB, key string) bool {
	t.Helper()
	n, err := b.client.Do(context.Background(), b.client.B().Exists().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// subscribers counts the subscriptions Redis has for a Pub/Sub channel: PUBSUB NUMSUB,
// or in a cluster PUBSUB SHARDNUMSUB on the slot's master.
func (b *redisBackend) subscribers(t testing.TB, name string) int64 {
	t.Helper()
	c := b.client
	cmd := c.B().PubsubNumsub().Channel(name).Build()
	if b.cluster != nil {
		cmd = c.B().PubsubShardnumsub().Channel(name).Build()
	}
	m, err := c.Do(context.Background(), cmd).ToArray()
	if err != nil || len(m) != 2 {
		t.Fatalf("subscribers of %s: %v %v", name, m, err)
	}
	n, _ := m[1].AsInt64()
	return n
}

// publish publishes a raw payload on a Pub/Sub channel as the layer does: PUBLISH,
// or in a cluster SPUBLISH.
func (b *redisBackend) publish(t testing.TB, name, payload string) {
	t.Helper()
	c := b.client
	cmd := c.B().Publish().Channel(name).Message(payload).Build()
	if b.cluster != nil {
		cmd = c.B().Spublish().Channel(name).Message(payload).Build()
	}
	if err := c.Do(context.Background(), cmd).Error(); err != nil {
		t.Fatalf("publish on %s: %v", name, err)
	}
}

// holds reports whether the layer's connection for name is subscribed to it.
func (r *RedisPubSub) holds(name string) bool { return r.holder(name) != nil }

type backendCase struct {
	name string
	f    func(t *testing.T, b *redisBackend)
}

// runBackends runs cases as parallel subtests on a single server and on a cluster.
func runBackends(t *testing.T, cases []backendCase) {
	for _, start := range []func(*testing.T) *redisBackend{startSingle, startCluster} {
		b := start(t)
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.f(t, b)
				})
			}
		})
	}
}

func TestRedisBackendsCore(t *testing.T) {
	t.Parallel()
	runBackends(t, []backendCase{
		{"send receive", backendSendReceive},
		{"groups", backendGroups},
		{"group send fan-out", backendGroupFanOut},
		{"capacity", backendCapacity},
		{"expiry", backendExpiry},
		{"attach", backendAttach},
		{"inflight", backendInflight},
		{"two workers", backendTwoWorkers},
		{"flush", backendFlush},
		{"close", backendClose},
	})
}

func TestRedisBackendsPubSub(t *testing.T) {
	t.Parallel()
	runBackends(t, []backendCase{
		{"send receive", backendPubSubSendReceive},
		{"groups", backendPubSubGroups},
		{"attach", backendPubSubAttach},
		{"capacity", backendPubSubCapacity},
		{"malformed", backendPubSubMalformed},
		{"flush", backendPubSubFlush},
		{"close", backendPubSubClose},
	})
}

func backendSendReceive(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p})
	other := b.core(t, RedisOptions{Prefix: p})
	ctx := context.Background()
	local, err := l.NewChannel(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	chat, err := l.NewChannel(ctx, "chat") // a second queue key: a second loop in a cluster
	if err != nil {
		t.Fatal(err)
	}
	for _, channel := range []string{"thumbnails", local, chat} {
		for i := range 20 {
			lsend(t, other, channel, msg("n", "i", i))
		}
		for i := range 20 {
			if got := recvWithin(t, l, channel); got["i"] != int64(i) {
				t.Fatalf("%s: message %d has i=%v", channel, i, got["i"])
			}
		}
		lexpectEmpty(t, l, channel, 50*time.Millisecond)
	}
	// Key names are channels_redis' own: no {hash tags}, in a cluster too.
	lsend(t, l, "specific.elsewhere!x", msg("parked"))
	if !b.exists(t, p+"specific.elsewhere!") {
		t.Fatalf("keys %q; want %s", b.keys(t, p+"*"), p+"specific.elsewhere!")
	}
	// Both directions between processes.
	a, in := attachInbox(t, l)
	o, inO := attachInbox(t, other)
	lsend(t, other, a, msg("to l"))
	lsend(t, l, o, msg("to other"))
	if in.next(t).Type() != "to l" || inO.next(t).Type() != "to other" {
		t.Fatal("wrong messages")
	}
	// A receiver blocked before the send is woken, on a normal and a local channel.
	for _, ch := range []string{"late.worker", local} {
		done := make(chan canal.Message, 1)
		go func() {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			m, _ := l.Receive(ctx, ch)
			done <- m
		}()
		time.Sleep(50 * time.Millisecond) // let the receiver block first
		lsend(t, other, ch, msg("late"))
		select {
		case m := <-done:
			if m.Type() != "late" {
				t.Fatalf("%s: got %v", ch, m)
			}
		case <-time.After(wait):
			t.Fatalf("%s: blocked receiver not woken", ch)
		}
	}
}

func backendGroups(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p})
	other := b.core(t, RedisOptions{Prefix: p}) // another process
	ctx := context.Background()
	a, ra := attachInbox(t, l)
	bb, rb := attachInbox(t, l)
	queued, _ := l.NewChannel(ctx, "")
	remote, rr := attachInbox(t, other)
	worker := "chat.archive"
	for _, ch := range []string{a, a, bb, queued, remote, worker, worker} { // repeated adds are idempotent
		if err := l.GroupAdd(ctx, "room", ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.GroupSend(ctx, "room", msg("chat.message", "text", "one")); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]inbox{"a": ra, "b": rb, "remote": rr} {
		if got := in.next(t); got.String("text") != "one" {
			t.Fatalf("%s got %v", name, got)
		}
	}
	if got := recvWithin(t, l, queued); got.String("text") != "one" {
		t.Fatalf("queued got %v", got)
	}
	if got := recvWithin(t, l, worker); got.String("text") != "one" {
		t.Fatalf("worker got %v", got)
	}
	lexpectEmpty(t, l, worker, 50*time.Millisecond) // once, despite two adds
	ra.none(t, 50*time.Millisecond)
	// One copy per queue key, listing that key's members.
	lsend(t, l, "specific.parked!x", msg("fill"))
	l.GroupAdd(ctx, "parked", "specific.parked!x")
	l.GroupAdd(ctx, "parked", "specific.parked!y")
	l.GroupSend(ctx, "parked", msg("news"))
	stored := zmembers(t, b.client, p+"specific.parked!")
	if len(stored) != 2 {
		t.Fatalf("queue holds %d messages; want 2", len(stored))
	}
	m := decodeStored(t, stored[1])
	if list, _ := m[asgiChannelKey].([]any); len(list) != 2 {
		t.Fatalf("group copy %v", m)
	}

	if err := l.GroupDiscard(ctx, "room", bb); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		l.GroupDiscard(ctx, "room", bb),             // already gone
		l.GroupDiscard(ctx, "nosuchgroup", "x"),     // unknown group
		l.GroupSend(ctx, "nosuchgroup", msg("x.y")), // no members: no-op
	} {
		if err != nil {
			t.Fatalf("want silent no-op, got %v", err)
		}
	}
	l.GroupSend(ctx, "room", msg("two"))
	ra.next(t)
	rr.next(t)
	rb.none(t, 100*time.Millisecond)
	recvWithin(t, l, worker)
	recvWithin(t, l, queued)
	// Discarding everyone leaves no key behind.
	for _, ch := range []string{a, queued, remote, worker} {
		l.GroupDiscard(ctx, "room", ch)
	}
	if b.exists(t, p+":group:room") {
		t.Error("empty group key left")
	}

	// Group expiry: the group key lives GroupExpiry, and a member that joined more
	// than GroupExpiry ago (as a crashed process leaves it) is pruned, unless it
	// joins again.
	short := b.core(t, RedisOptions{Prefix: p, GroupExpiry: time.Hour})
	fresh, inFresh := attachInbox(t, short)
	old, inOld := attachInbox(t, short)
	short.GroupAdd(ctx, "g", fresh)
	if n := ttl(t, b.client, p+":group:g"); n < 3598 || n > 3600 {
		t.Fatalf("group TTL %d; want GroupExpiry", n)
	}
	for _, member := range []string{old, "gone.worker"} {
		zadd(t, b.client, p+":group:g", nowf()-3601, []byte(member))
	}
	if err := short.GroupSend(ctx, "g", msg("ping")); err != nil {
		t.Fatal(err)
	}
	inFresh.next(t)
	inOld.none(t, 100*time.Millisecond)
	if got := zmembers(t, b.client, p+":group:g"); !slices.Equal(got, []string{fresh}) {
		t.Fatalf("members after pruning: %q", got)
	}
	if b.exists(t, p+"gone.worker") {
		t.Fatal("expired member got a message")
	}
	zadd(t, b.client, p+":group:g", nowf()-3601, []byte(old))
	short.GroupAdd(ctx, "g", old) // refreshes its join time
	short.GroupSend(ctx, "g", msg("again"))
	inOld.next(t)
	inFresh.next(t)
}

// backendGroupFanOut sends to a group whose members live on many queue keys (in a
// cluster, on every master): each member gets the message exactly once, and full
// keys are skipped and counted.
func backendGroupFanOut(t *testing.T, b *redisBackend) {
	p := b.prefix()
	sender := b.core(t, RedisOptions{Prefix: p, Capacity: 1})
	ctx := context.Background()
	var inboxes []inbox
	for range 4 {
		l := b.core(t, RedisOptions{Prefix: p})
		for range 3 {
			name, in := attachInbox(t, l)
			inboxes = append(inboxes, in)
			sender.GroupAdd(ctx, "fan", name)
		}
	}
	// Parked members on keys nobody drains: 12 keys, spread over the slots.
	for i := range 12 {
		sender.GroupAdd(ctx, "fan", fmt.Sprintf("specific.proc%d!a", i))
	}
	lsend(t, sender, "specific.proc0!a", msg("fill")) // this one is now full
	if err := sender.GroupSend(ctx, "fan", msg("fan", "n", 1)); err != nil {
		t.Fatal(err)
	}
	for i, in := range inboxes {
		if got := in.next(t); got["n"] != int64(1) {
			t.Fatalf("member %d got %v", i, got)
		}
		in.none(t, 0)
	}
	for i := range 12 {
		if n := len(zmembers(t, b.client, fmt.Sprintf("%sspecific.proc%d!", p, i))); n != 1 {
			t.Fatalf("parked key %d holds %d messages; want 1", i, n)
		}
	}
	if st := sender.Stats(); st.GroupFull != 1 {
		t.Fatalf("stats %+v; want 1 full key", st)
	}
}

// backendCapacity checks Capacity and ChannelCapacity: Send reports a full key,
// GroupSend skips it, and a local queue drops its overflow.
func backendCapacity(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p, Capacity: 3, ChannelCapacity: []Capacity{
		{Pattern: "http.*", Size: 2},
		{Pattern: "http.request*", Size: 5}, // shadowed: the first match wins
		{Pattern: "big.*", Size: 6},
	}})
	ctx := context.Background()
	for _, tt := range []struct {
		channel, sibling string // sibling shares channel's key
		size             int
	}{
		{"plain", "", 3},
		{"specific.x!y", "specific.x!z", 3}, // another process's key, which nobody drains
		{"http.request.1", "", 2},
		{"big.one!local", "big.one!other", 6},
	} {
		for i := range tt.size {
			lsend(t, l, tt.channel, msg("fill", "i", i))
		}
		err := l.Send(ctx, tt.channel, msg("over"))
		if !errors.Is(err, canal.ErrChannelFull) || !strings.HasPrefix(err.Error(), "layers: ") {
			t.Fatalf("%s: send over capacity %d: %v", tt.channel, tt.size, err)
		}
		if tt.sibling != "" {
			if err := l.Send(ctx, tt.sibling, msg("over")); !errors.Is(err, canal.ErrChannelFull) {
				t.Fatalf("%s, sharing the full key: %v", tt.sibling, err)
			}
			continue // nobody in this process may receive another process's channel
		}
		if got := recvWithin(t, l, tt.channel); got["i"] != int64(0) {
			t.Fatalf("%s: first message %v", tt.channel, got)
		}
		lsend(t, l, tt.channel, msg("room again")) // receiving freed a slot
		if err := l.Send(ctx, tt.channel, msg("over")); !errors.Is(err, canal.ErrChannelFull) {
			t.Fatalf("%s: %v; want ErrChannelFull", tt.channel, err)
		}
	}
	// GroupSend skips the full key and never reports it; an attached member whose
	// deliver refuses costs only its own copy.
	refusing, _, err := l.Attach(ctx, "", func(canal.Message) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	a, in := attachInbox(t, l)
	for _, ch := range []string{"specific.x!z", refusing, a, "queue.empty"} {
		l.GroupAdd(ctx, "g", ch)
	}
	if err := l.GroupSend(ctx, "g", msg("news")); err != nil {
		t.Fatalf("GroupSend with a full member: %v", err)
	}
	if got := in.next(t); got.Type() != "news" {
		t.Fatalf("attached member got %v", got)
	}
	if got := recvWithin(t, l, "queue.empty"); got.Type() != "news" {
		t.Fatalf("queued member got %v", got)
	}
	waitFor(t, "the refused copy's drop", func() bool { return l.Stats().Dropped == 1 })
	if st := l.Stats(); st.GroupFull != 1 {
		t.Fatalf("stats %+v; want one full key", st)
	}

	// This process's own channels are drained into local queues at once: their
	// capacity applies there, and overflow is dropped and counted.
	lq := b.core(t, RedisOptions{Prefix: p, Capacity: 3})
	ch, _ := lq.NewChannel(ctx, "")
	for i := range 5 {
		lsend(t, lq, ch, msg("fill", "i", i))
		// One at a time: the Redis key has the same capacity until the loop drains it.
		waitFor(t, "the loop", func() bool { st := lq.Stats(); return st.Delivered+st.Dropped == uint64(i+1) })
	}
	if st := lq.Stats(); st.Dropped != 2 {
		t.Fatalf("stats %+v; want 2 dropped", st)
	}
	for i := range 3 {
		if got := recvWithin(t, lq, ch); got["i"] != int64(i) {
			t.Fatalf("got %v", got)
		}
	}
	lexpectEmpty(t, lq, ch, 50*time.Millisecond)
}

// backendExpiry checks Expiry in Redis (old members pruned, keys expiring) and in
// the process (local queues, encrypted tokens). Its subtests sleep, so in parallel.
func backendExpiry(t *testing.T, b *redisBackend) {
	c := b.client
	ctx := context.Background()
	t.Run("old members pruned by send", func(t *testing.T) {
		t.Parallel()
		p := b.prefix()
		l := b.core(t, RedisOptions{Prefix: p, Capacity: 2})
		for _, ch := range []string{"w", "specific.x!y"} { // a process key is pruned too
			key := p + nonLocal(ch)
			zadd(t, c, key, nowf()-61, stored(t, map[string]any{"type": "stale"}))
			zadd(t, c, key, nowf()-59, stored(t, map[string]any{"type": "fresh"}))
			lsend(t, l, ch, msg("new"))
			if m := zmembers(t, c, key); len(m) != 2 {
				t.Fatalf("%s: %d members; want the stale one pruned", key, len(m))
			}
			if err := l.Send(ctx, ch, msg("over")); !errors.Is(err, canal.ErrChannelFull) {
				t.Fatalf("%s: %v; want ErrChannelFull", ch, err)
			}
		}
		if got := recvWithin(t, l, "w"); got.Type() != "fresh" {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("keys expire", func(t *testing.T) {
		t.Parallel()
		p := b.prefix()
		l := b.core(t, RedisOptions{Prefix: p, Expiry: time.Second})
		lsend(t, l, "w", msg("old"))
		if n := ttl(t, c, p+"w"); n != 1 {
			t.Fatalf("TTL %d", n)
		}
		l.GroupAdd(ctx, "g", "w")
		l.GroupSend(ctx, "g", msg("old")) // a group's copy expires too
		time.Sleep(2100 * time.Millisecond)
		lexpectEmpty(t, l, "w", 50*time.Millisecond)
	})
	t.Run("local queue", func(t *testing.T) {
		t.Parallel()
		l := b.core(t, RedisOptions{Prefix: b.prefix(), Expiry: time.Second})
		ch, _ := l.NewChannel(ctx, "")
		lsend(t, l, ch, msg("old"))
		waitFor(t, "delivery", func() bool { return l.Stats().Delivered == 1 })
		time.Sleep(1100 * time.Millisecond)
		lexpectEmpty(t, l, ch, 50*time.Millisecond)
	})
	t.Run("idle local queues freed", func(t *testing.T) {
		t.Parallel()
		l := b.core(t, RedisOptions{Prefix: b.prefix(), Expiry: time.Second})
		for range 10 {
			ch, _ := l.NewChannel(ctx, "")
			lsend(t, l, ch, msg("never read"))
		}
		waitFor(t, "delivery", func() bool { return l.Stats().Delivered == 10 })
		waitFor(t, "the sweep", func() bool { // the loop sweeps every redisLoopBlock when idle
			l.mu.RLock()
			defer l.mu.RUnlock()
			return len(l.buffers) == 0
		})
	})
	t.Run("old encrypted token refused", func(t *testing.T) {
		t.Parallel()
		p := b.prefix()
		l := b.core(t, RedisOptions{Prefix: p, SymmetricEncryptionKeys: []string{"k"}})
		ch, in := attachInbox(t, l)
		body, _ := appendMessage(nil, msg("old"), asgiChannelKey, ch)
		for _, at := range []int64{time.Now().Unix() - 71, time.Now().Unix() + 70} { // expiry+10 old, 60 s ahead
			tok := l.crypter.encryptAt([]byte("0123456789ab"), body, at, make([]byte, 16))
			zadd(t, c, p+nonLocal(ch), nowf(), tok)
		}
		waitFor(t, "the skips", func() bool { return l.Stats().Malformed == 2 })
		lsend(t, l, ch, msg("new"))
		if got := in.next(t); got.Type() != "new" {
			t.Fatalf("got %v", got)
		}
	})
}

func backendAttach(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p})
	ctx := context.Background()
	var calls atomic.Int32
	got := make(inbox, 10)
	name, detach, err := l.Attach(ctx, "ws", func(m canal.Message) bool {
		calls.Add(1)
		got <- m
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "ws."+l.ProcessID()+"!") || ValidChannelName(name) != nil {
		t.Fatalf("bad name %q", name)
	}
	lsend(t, l, name, msg("direct"))
	if got.next(t).Type() != "direct" {
		t.Fatal("no message")
	}
	if _, err := l.Receive(ctx, name); !errors.Is(err, canal.ErrInvalidName) {
		t.Errorf("Receive on an attached channel: %v", err)
	}
	l.GroupAdd(ctx, "g", name)
	detach()
	detach() // idempotent
	calls.Store(0)
	if err := l.Send(ctx, name, msg("after")); err != nil {
		t.Errorf("Send after detach: %v; want a silent drop", err)
	}
	if b.exists(t, p+nonLocal(name)) {
		t.Error("Send to a detached channel reached Redis")
	}
	if err := l.GroupSend(ctx, "g", msg("after")); err != nil {
		t.Error(err)
	}
	if m := zmembers(t, b.client, p+":group:g"); len(m) != 0 {
		t.Errorf("detached member not pruned: %q", m)
	}
	if err := l.GroupAdd(ctx, "g2", name); err != nil { // joining after detach: nothing
		t.Error(err)
	}
	if b.exists(t, p+":group:g2") {
		t.Error("GroupAdd of a detached channel reached Redis")
	}
	// Someone else (Django, another Go process) still sends to it: dropped, counted.
	other := b.core(t, RedisOptions{Prefix: p})
	lsend(t, other, name, msg("late"))
	waitFor(t, "the undeliverable count", func() bool { return l.Stats().Undeliverable == 1 })
	if calls.Load() != 0 {
		t.Errorf("deliver called %d times after detach", calls.Load())
	}
	l.mu.RLock()
	nl, nb := len(l.listeners), len(l.buffers)
	l.mu.RUnlock()
	if nl != 0 || nb != 0 {
		t.Errorf("detached channel holds %d listeners, %d buffers", nl, nb)
	}
	if _, err := l.Receive(ctx, name); !errors.Is(err, canal.ErrInvalidName) {
		t.Errorf("Receive on a detached channel: %v", err)
	}
}

// backendInflight covers Receive's $inflight backup (Django's receive protocol on
// normal channels), which in a cluster lives in another slot than its queue.
func backendInflight(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p})
	c := b.client
	lsend(t, l, "worker", msg("one"))
	recvWithin(t, l, "worker")
	waitFor(t, "the backup's removal", func() bool { return !b.exists(t, p+"worker$inflight") })
	// A receiver that died after popping left its message in $inflight: once it is
	// old enough to be an orphan, the next receive puts it back and gets it first. A
	// recent backup may belong to a live receiver elsewhere: it stays.
	zadd(t, c, p+"worker$inflight", nowf()-30, stored(t, map[string]any{"type": "orphan"}))
	zadd(t, c, p+"worker$inflight", nowf()-1, stored(t, map[string]any{"type": "in flight elsewhere"}))
	lsend(t, l, "worker", msg("newer"))
	if got := recvWithin(t, l, "worker"); got.Type() != "orphan" {
		t.Fatalf("got %v; want the restored message", got)
	}
	if got := recvWithin(t, l, "worker"); got.Type() != "newer" {
		t.Fatalf("got %v", got)
	}
	waitFor(t, "our backups removed", func() bool { return len(zmembers(t, c, p+"worker$inflight")) == 1 })
	if m := zmembers(t, c, p+"worker$inflight"); decodeStored(t, m[0]).Type() != "in flight elsewhere" {
		t.Fatalf("$inflight holds %q", m)
	}
	c.Do(context.Background(), c.B().Del().Key(p+"worker$inflight").Build())
	// A receiver that gives up loses nothing: a message popped for nobody goes back.
	lexpectEmpty(t, l, "worker", 50*time.Millisecond) // the poller still waits in BZPOPMIN
	lsend(t, l, "worker", msg("unclaimed"))
	waitFor(t, "the message back in the queue", func() bool { return len(zmembers(t, c, p+"worker")) == 1 })
	if got := recvWithin(t, l, "worker"); got.Type() != "unclaimed" {
		t.Fatalf("got %v", got)
	}
}

// backendTwoWorkers runs receivers of one normal channel in two processes and in
// one: every message is received exactly once.
func backendTwoWorkers(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l1 := b.core(t, RedisOptions{Prefix: p, Capacity: 10})
	l2 := b.core(t, RedisOptions{Prefix: p, Capacity: 10})
	const total = 200
	var mu sync.Mutex
	seen := map[int64]int{}
	var left atomic.Int64
	left.Store(total)
	all, cancelAll := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelAll()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			for {
				err := l1.Send(all, "work", msg("job", "n", i))
				if err == nil {
					break
				}
				if !errors.Is(err, canal.ErrChannelFull) {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	})
	for r := range 4 {
		l := []*Redis{l1, l2}[r%2]
		wg.Go(func() {
			for left.Load() > 0 {
				ctx, cancel := all, context.CancelFunc(func() {})
				if r >= 2 {
					ctx, cancel = context.WithTimeout(all, 20*time.Millisecond) // gives up often
				}
				got, err := l.Receive(ctx, "work")
				cancel()
				if err != nil {
					if all.Err() != nil {
						return
					}
					continue
				}
				mu.Lock()
				seen[got["n"].(int64)]++
				mu.Unlock()
				if left.Add(-1) == 0 {
					cancelAll()
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("received %d distinct messages of %d", len(seen), total)
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("message %d received %d times", n, c)
		}
	}
}

func backendFlush(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p})
	ctx := context.Background()
	a, in := attachInbox(t, l)
	local, _ := l.NewChannel(ctx, "")
	l.GroupAdd(ctx, "g", a)
	l.GroupAdd(ctx, "g", "w")
	for i := range 20 { // keys on every master
		l.GroupAdd(ctx, fmt.Sprintf("g%d", i), "w")
		lsend(t, l, fmt.Sprintf("specific.p%d!x", i), msg("before"))
	}
	lsend(t, l, "w", msg("before"))
	lsend(t, l, local, msg("before"))
	if got := recvWithin(t, l, local); got.Type() != "before" {
		t.Fatalf("got %v", got)
	}
	b.client.Do(ctx, b.client.B().Set().Key("x"+p).Value("kept").Build())
	if n := len(b.keys(t, p+"*")); n < 40 {
		t.Fatalf("%d keys before Flush", n)
	}
	// Receivers blocked across Flush still get later messages.
	chans := []string{"blocked", local}
	got := make(chan canal.Message, len(chans))
	for _, ch := range chans {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
			defer cancel()
			m, _ := l.Receive(ctx, ch)
			got <- m
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := b.keys(t, p+"*"); len(keys) != 0 {
		t.Fatalf("keys after Flush: %q", keys)
	}
	if !b.exists(t, "x"+p) {
		t.Fatal("Flush deleted a key outside the prefix")
	}
	l.GroupSend(ctx, "g", msg("after"))
	in.none(t, 100*time.Millisecond)
	lexpectEmpty(t, l, "w", 50*time.Millisecond) // neither the old message nor the group's
	lsend(t, l, a, msg("direct"))
	if in.next(t).Type() != "direct" {
		t.Fatal("attached channel lost by Flush")
	}
	for _, ch := range chans {
		lsend(t, l, ch, msg("wake"))
	}
	for range chans {
		select {
		case m := <-got:
			if m.Type() != "wake" {
				t.Fatalf("got %v", m)
			}
		case <-time.After(wait):
			t.Fatal("receiver stranded by Flush")
		}
	}
}

func backendClose(t *testing.T, b *redisBackend) {
	p := b.prefix()
	l := b.core(t, RedisOptions{Prefix: p})
	ctx := context.Background()
	in := make(inbox, 8)
	a, detach, err := l.Attach(ctx, "", in.deliver)
	if err != nil {
		t.Fatal(err)
	}
	local, _ := l.NewChannel(ctx, "chat")
	l.GroupAdd(ctx, "g", a)
	chans := []string{"x", "x", "y", local}
	errc := make(chan error, len(chans))
	for _, ch := range chans {
		go func() {
			_, err := l.Receive(ctx, ch)
			errc <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	expectWoken(t, errc, len(chans))
	expectClosed(t, l, a)
	// Close deleted the liveness key.
	if b.exists(t, p+":canal:alive:"+l.ProcessID()) {
		t.Error("liveness key left after Close")
	}
	// A message sent by another process after Close is not delivered.
	other := b.core(t, RedisOptions{Prefix: p})
	lsend(t, other, a, msg("late"))
	in.none(t, 100*time.Millisecond)
	detach() // harmless after Close
	if err := l.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func backendPubSubSendReceive(t *testing.T, b *redisBackend) {
	p := b.psPrefix()
	l := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	other := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	ctx := context.Background()
	var chans []string
	for range 6 { // channels on several masters
		ch, err := l.NewChannel(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	for _, ch := range chans {
		for i := range 10 {
			lsend(t, other, ch, msg("n", "i", i))
		}
	}
	for _, ch := range chans {
		for i := range 10 {
			if got := recvWithin(t, l, ch); got["i"] != int64(i) {
				t.Fatalf("%s message %d: %v", ch, i, got)
			}
		}
		lexpectEmpty(t, l, ch, 20*time.Millisecond)
	}
	lsend(t, other, chans[0], allTypesGoNative())
	sameMessage(t, recvWithin(t, l, chans[0]), allTypesGo())
	// A normal name: Receive subscribes to it, and every receiving process gets every
	// message (Pub/Sub fans out).
	name := p + "thumbnails"
	r1, r2 := receiveAsync(t, l, name), receiveAsync(t, other, name)
	if n := b.subscribers(t, name); n != 2 {
		t.Fatalf("%d subscribers", n)
	}
	lsend(t, l, name, msg("job"))
	if within(t, r1).Type() != "job" || within(t, r2).Type() != "job" {
		t.Fatal("a receiver missed the job")
	}
	// Nothing is stored, and nobody listening means the message is gone.
	lsend(t, l, p+"nobody.listens", msg("lost"))
	if keys := b.keys(t, p+"*"); len(keys) != 0 {
		t.Fatalf("keys %q", keys)
	}
}

func backendPubSubGroups(t *testing.T, b *redisBackend) {
	p := b.psPrefix()
	l := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	other := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	ctx := context.Background()
	a, ra := attachInbox(t, l)
	bb, rb := attachInbox(t, l)
	q, _ := l.NewChannel(ctx, "")
	remote, rr := attachInbox(t, other)
	for _, ch := range []string{a, a, bb, q} {
		if err := l.GroupAdd(ctx, "room", ch); err != nil {
			t.Fatal(err)
		}
	}
	other.GroupAdd(ctx, "room", remote)
	// One subscription per process, however many members.
	if n := b.subscribers(t, p+"__group__room"); n != 2 {
		t.Fatalf("%d subscribers to the group", n)
	}
	// Only this process's channels can join its groups.
	if err := l.GroupAdd(ctx, "room", remote); !errors.Is(err, canal.ErrInvalidName) {
		t.Fatalf("GroupAdd of another process's channel: %v", err)
	}
	if err := other.GroupSend(ctx, "room", msg("chat.message", "text", "one")); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]inbox{"a": ra, "b": rb, "remote": rr} {
		if got := in.next(t); got.String("text") != "one" {
			t.Fatalf("%s got %v", name, got)
		}
	}
	if got := recvWithin(t, l, q); got.String("text") != "one" {
		t.Fatalf("queued got %v", got)
	}
	ra.none(t, 50*time.Millisecond) // once, despite two adds
	// Many groups: their channels spread over the masters.
	for i := range 12 {
		g := fmt.Sprintf("g%d", i)
		other.GroupAdd(ctx, g, remote)
		l.GroupSend(ctx, g, msg("g", "i", i))
		if got := rr.next(t); got["i"] != int64(i) {
			t.Fatalf("group %s: %v", g, got)
		}
	}
	for _, err := range []error{
		l.GroupDiscard(ctx, "room", bb),
		l.GroupDiscard(ctx, "room", bb),       // already gone
		l.GroupDiscard(ctx, "nosuchgroup", a), // unknown group
		l.GroupSend(ctx, "nosuchgroup", msg("x")),
	} {
		if err != nil {
			t.Fatalf("want silent no-op, got %v", err)
		}
	}
	l.GroupSend(ctx, "room", msg("two"))
	ra.next(t)
	rr.next(t)
	rb.none(t, 100*time.Millisecond)
	recvWithin(t, l, q)
	// The last local member leaving unsubscribes the process.
	l.GroupDiscard(ctx, "room", a)
	l.GroupDiscard(ctx, "room", q)
	if l.holds(p+"__group__room") || b.subscribers(t, p+"__group__room") != 1 {
		t.Fatal("group still subscribed with no local member")
	}
	// In a cluster the message is sharded: a raw SSUBSCRIBE on the channel sees it.
	if b.cluster != nil {
		c := b.client
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		seen := make(chan string, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Receive(rctx, c.B().Ssubscribe().Channel(p+"__group__room").Build(), func(m rueidis.PubSubMessage) {
				seen <- m.Channel
			})
		}()
		waitFor(t, "the raw shard subscriber", func() bool { return b.subscribers(t, p+"__group__room") == 2 })
		other.GroupSend(ctx, "room", msg("sharded"))
		select {
		case ch := <-seen:
			if ch != p+"__group__room" {
				t.Fatalf("got %q", ch)
			}
		case <-time.After(wait):
			t.Fatal("SSUBSCRIBE saw nothing: not published with SPUBLISH")
		}
		cancel()
		<-done
	}
}

func backendPubSubAttach(t *testing.T, b *redisBackend) {
	p := b.psPrefix()
	l := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	ctx := context.Background()
	var calls atomic.Int32
	name, detach, err := l.Attach(ctx, "ws", func(canal.Message) bool { calls.Add(1); return true })
	if err != nil {
		t.Fatal(err)
	}
	l.GroupAdd(ctx, "g", name)
	lsend(t, l, name, msg("direct"))
	waitFor(t, "delivery", func() bool { return calls.Load() == 1 })
	if _, err := l.Receive(ctx, name); !errors.Is(err, canal.ErrInvalidName) {
		t.Errorf("Receive on an attached channel: %v", err)
	}
	detach()
	detach() // idempotent
	waitFor(t, "the unsubscriptions", func() bool {
		return b.subscribers(t, name) == 0 && b.subscribers(t, p+"__group__g") == 0
	})
	for op, err := range map[string]error{
		"Send": l.Send(ctx, name, msg("after")), "GroupAdd": l.GroupAdd(ctx, "g2", name),
		"GroupSend": l.GroupSend(ctx, "g", msg("after")),
	} {
		if err != nil {
			t.Errorf("%s after detach: %v", op, err)
		}
	}
	if l.holds(p + "__group__g2") {
		t.Error("GroupAdd of a detached channel subscribed")
	}
	time.Sleep(50 * time.Millisecond)
	if calls.Load() != 1 {
		t.Errorf("deliver called %d times", calls.Load())
	}
}

func backendPubSubCapacity(t *testing.T, b *redisBackend) {
	p := b.psPrefix()
	l := b.pubsub(t, RedisPubSubOptions{Prefix: p, Capacity: 2})
	ch, _ := l.NewChannel(context.Background(), "")
	for i := range 4 {
		lsend(t, l, ch, msg("fill", "i", i)) // Pub/Sub: never ErrChannelFull
	}
	waitFor(t, "the drops", func() bool { return l.Stats().Dropped == 2 })
	for i := range 2 {
		if got := recvWithin(t, l, ch); got["i"] != int64(i) {
			t.Fatalf("got %v", got)
		}
	}
}

// backendPubSubMalformed publishes payloads that cannot be read: each is skipped,
// counted and logged without its contents, and the channel goes on.
func backendPubSubMalformed(t *testing.T, b *redisBackend) {
	var logs canaltest.LogBuffer
	l := b.pubsub(t, RedisPubSubOptions{Prefix: b.psPrefix(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ch, _ := l.NewChannel(context.Background(), "")
	for _, payload := range []string{"", "\xc1", "\x81\x01\x02", "\x81\xa4type\x05", "\x91\xa1x", "\x80",
		"\x82\xa4type\xa1x\xa1t\xd6\xff\x00\x00\x00\x01", "SECRET-PAYLOAD"} {
		b.publish(t, ch, payload)
	}
	waitFor(t, "the skips", func() bool { return l.Stats().Malformed == 8 })
	lsend(t, l, ch, msg("good"))
	if got := recvWithin(t, l, ch); got.Type() != "good" {
		t.Fatalf("got %v", got)
	}
	if out := logs.String(); !strings.Contains(out, "skipped") || strings.Contains(out, "SECRET") {
		t.Fatalf("log:\n%s", out)
	}
}

func backendPubSubFlush(t *testing.T, b *redisBackend) {
	p := b.psPrefix()
	l := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	ctx := context.Background()
	a, in := attachInbox(t, l)
	l.GroupAdd(ctx, "g", a)
	q, _ := l.NewChannel(ctx, "")
	lsend(t, l, q, msg("before"))
	waitFor(t, "delivery", func() bool { return l.Stats().Delivered == 1 })
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lexpectEmpty(t, l, q, 50*time.Millisecond)
	l.GroupSend(ctx, "g", msg("after"))
	in.none(t, 100*time.Millisecond)
	if b.subscribers(t, p+"__group__g") != 0 {
		t.Error("Flush left the group subscribed")
	}
	lsend(t, l, a, msg("direct"))
	if in.next(t).Type() != "direct" {
		t.Fatal("attached channel lost by Flush")
	}
}

func backendPubSubClose(t *testing.T, b *redisBackend) {
	p := b.psPrefix()
	l := b.pubsub(t, RedisPubSubOptions{Prefix: p})
	ctx := context.Background()
	in := make(inbox, 4)
	a, _, err := l.Attach(ctx, "", in.deliver)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := l.NewChannel(ctx, "")
	errc := make(chan error, 2)
	for _, ch := range []string{q, p + "worker"} {
		go func() {
			_, err := l.Receive(ctx, ch)
			errc <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	expectWoken(t, errc, 2)
	expectClosed(t, l, a)
	if _, err := l.Receive(ctx, q); !errors.Is(err, canal.ErrLayerClosed) {
		t.Errorf("Receive on its own channel after Close: %v", err)
	}
	if err := l.GroupAdd(ctx, "g", a); !errors.Is(err, canal.ErrLayerClosed) {
		t.Errorf("GroupAdd of the attached channel after Close: %v", err)
	}
	waitFor(t, "the subscriptions' end", func() bool { return b.subscribers(t, a) == 0 && b.subscribers(t, q) == 0 })
	in.none(t, 0)
	if err := l.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRedisClusterOptions covers the choice of mode.
func TestRedisClusterOptions(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	ctx := context.Background()
	s := &SentinelOptions{MasterSet: "m", Addrs: []string{"127.0.0.1:1"}}
	for _, tt := range []struct {
		name    string
		opts    RedisOptions
		want    string
		unavail bool
	}{
		{"hosts and cluster", RedisOptions{Hosts: []string{srv.URL()}, Cluster: []string{srv.Addr()}}, "mutually exclusive", false},
		{"cluster and sentinel", RedisOptions{Cluster: []string{srv.Addr()}, Sentinel: s}, "mutually exclusive", false},
		{"hosts and sentinel", RedisOptions{Hosts: []string{srv.URL()}, Sentinel: s}, "mutually exclusive", false},
		{"bad cluster address", RedisOptions{Cluster: []string{"redis://x"}}, "host:port", false},
		{"no master set", RedisOptions{Sentinel: &SentinelOptions{Addrs: []string{"127.0.0.1:1"}}}, "MasterSet", false},
		{"no sentinels", RedisOptions{Sentinel: &SentinelOptions{MasterSet: "m"}}, "Addrs", false},
		{"not a cluster", RedisOptions{Cluster: []string{srv.Addr()}}, "not a Redis Cluster", false},
		{"cluster unreachable", RedisOptions{Cluster: []string{"127.0.0.1:1"}}, "connect", true},
		{"sentinel unreachable", RedisOptions{Sentinel: s}, "sentinel", true},
		{"short liveness", RedisOptions{Liveness: time.Millisecond}, "Liveness", false},
	} {
		opts := tt.opts
		if len(opts.Hosts) == 0 && len(opts.Cluster) == 0 && opts.Sentinel == nil {
			opts.Hosts = []string{srv.URL()}
		}
		opts.ClientOptions = fastClient
		_, err := NewRedis(ctx, opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "layers: ") ||
			errors.Is(err, canal.ErrUnavailable) != tt.unavail {
			t.Errorf("NewRedis %s: %v", tt.name, err)
		}
		popts := RedisPubSubOptions{Hosts: opts.Hosts, Cluster: opts.Cluster, Sentinel: opts.Sentinel, ClientOptions: fastClient}
		if tt.name == "short liveness" {
			continue
		}
		_, err = NewRedisPubSub(ctx, popts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, canal.ErrUnavailable) != tt.unavail {
			t.Errorf("NewRedisPubSub %s: %v", tt.name, err)
		}
	}
}

func TestKeySlot(t *testing.T) {
	t.Parallel()
	// Vectors from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{
		"123456789": 0x31C3 & 16383, "foo": 12182, "": 0, "{user1000}.following": keySlot("user1000"),
		"foo{}{bar}": keySlot("foo{}{bar}"), "{}x": keySlot("{}x"), "a{b}c": keySlot("b"),
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d; want %d", key, got, want)
		}
	}
	if keySlot("foo{}{bar}") == keySlot("bar") {
		t.Error("an empty first tag must hash the whole key")
	}
}

// TestRedisCloseLeaks uses both layers on each backend (loops per key, a subscriber
// connection per server or master, the liveness goroutine, receivers blocked at
// Close) and checks that Close leaves no goroutine behind. Not parallel: goleak sees
// the whole process.
func TestRedisCloseLeaks(t *testing.T) {
	for _, start := range []func(*testing.T) *redisBackend{startSingle, startCluster} {
		b := start(t)
		t.Run(b.name, func(t *testing.T) {
			// rueidis closes the connections a cluster topology refresh replaced 5 s
			// later on a goroutine of its own, which ends by itself
			// (canaltest.SettleClusterClients).
			defer goleak.VerifyNone(t, append(leakOpts(),
				goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))...)
			ctx := context.Background()
			core := b.core(t, RedisOptions{Prefix: "leak:"})
			ps := b.pubsub(t, RedisPubSubOptions{Prefix: "leak"})
			errc := make(chan error, 4)
			for _, l := range []canal.Layer{core, ps} {
				for _, prefix := range []string{"a", "b", "c", "d"} {
					in := make(inbox, 8)
					name, _, err := l.Attach(ctx, prefix, in.deliver)
					if err != nil {
						t.Fatal(err)
					}
					l.GroupAdd(ctx, "g"+prefix, name)
					l.GroupSend(ctx, "g"+prefix, msg("x"))
					in.next(t)
				}
				rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				l.Receive(rctx, "leakworker")
				cancel()
				local, err := l.NewChannel(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				for _, ch := range []string{"leakworker", local} {
					go func() {
						_, err := l.Receive(ctx, ch)
						errc <- err
					}()
				}
			}
			time.Sleep(50 * time.Millisecond) // let the receivers block
			for _, l := range []canal.Layer{core, ps} {
				if err := l.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			expectWoken(t, errc, cap(errc))
		})
	}
}
