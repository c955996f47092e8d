package layers

// Redis going away under the layers: a restart (single server, cluster master), a
// Sentinel failover, a cluster slot moving. Each must be survived, and reported
// through OnReconnect and Stats().Reconnects.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// reconnects records OnReconnect calls.
type reconnects chan reconnectEvent

type reconnectEvent struct {
	host string
	down time.Duration
}

func (rc reconnects) hook(host string, down time.Duration) {
	select {
	case rc <- reconnectEvent{host, down}:
	default:
	}
}

// next waits (bounded) for a call.
func (rc reconnects) next(t testing.TB, within time.Duration) reconnectEvent {
	t.Helper()
	select {
	case ev := <-rc:
		if ev.host == "" || ev.down <= 0 {
			t.Fatalf("OnReconnect(%q, %v)", ev.host, ev.down)
		}
		return ev
	case <-time.After(within):
		t.Fatal("OnReconnect not called")
	}
	return reconnectEvent{}
}

var backendStarters = map[string]func(*testing.T) *redisBackend{"single": startSingle, "cluster": startCluster}

// outage kills the server that holds key (for a cluster: the master owning its slot)
// and returns a func that restarts it and waits until it serves again.
func (b *redisBackend) outage(t *testing.T, key string) (restart func()) {
	t.Helper()
	if b.single != nil {
		b.single.Kill()
		return b.single.Restart
	}
	i := b.cluster.NodeFor(t, key)
	b.cluster.Nodes()[i].Kill()
	return func() {
		b.cluster.Nodes()[i].Restart()
		b.cluster.WaitReady(t)
	}
}

// TestRedisReconnect restarts the server (the master) that holds the process's queue
// key under a core layer: sends to it fail with canal.ErrUnavailable meanwhile, the
// receive loop resumes, OnReconnect reports the gap, and the liveness key's loss is
// counted.
func TestRedisReconnect(t *testing.T) {
	t.Parallel()
	for name, start := range backendStarters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := start(t)
			rc := make(reconnects, 16)
			const p = "r:"
			l := b.core(t, RedisOptions{Prefix: p, OnReconnect: rc.hook, Liveness: testLiveness})
			ctx := context.Background()
			a, in := attachInbox(t, l)
			lsend(t, l, a, msg("before"))
			in.next(t)
			waitFor(t, "the liveness key", func() bool { return b.exists(t, p+":canal:alive:"+l.ProcessID()) })
			lapses := l.Stats().LivenessLapses

			restart := b.outage(t, p+nonLocal(a))
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			start := time.Now()
			err := l.Send(sctx, a, msg("while down"))
			cancel()
			if !errors.Is(err, canal.ErrUnavailable) || time.Since(start) > 2500*time.Millisecond {
				t.Fatalf("Send with its key's server down: %v after %v", err, time.Since(start))
			}
			time.Sleep(300 * time.Millisecond) // the loop fails and backs off
			restart()
			ev := rc.next(t, 20*time.Second)
			t.Logf("%s: OnReconnect(%q, %v)", b.name, ev.host, ev.down)
			waitForWithin(t, "a send after the restart", 20*time.Second, func() bool {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return l.Send(sctx, a, msg("after")) == nil
			})
			if m := in.next(t); m.Type() != "after" {
				t.Fatalf("got %v", m)
			}
			if n := l.Stats().Reconnects; n < 1 {
				t.Fatalf("Reconnects = %d", n)
			}
			if b.single != nil { // the key was on the restarted server
				waitFor(t, "the lapse", func() bool { return l.Stats().LivenessLapses == lapses+1 })
			}
		})
	}
}

// TestRedisPubSubReconnectHook restarts the server (the master) that serves a group's
// Pub/Sub channel: the layer subscribes again, reports the gap, and messages flow.
func TestRedisPubSubReconnectHook(t *testing.T) {
	t.Parallel()
	for name, start := range backendStarters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := start(t)
			rc := make(reconnects, 16)
			l := b.pubsub(t, RedisPubSubOptions{Prefix: "r", OnReconnect: rc.hook})
			sender := b.pubsub(t, RedisPubSubOptions{Prefix: "r"})
			ctx := context.Background()
			a, in := attachInbox(t, l)
			l.GroupAdd(ctx, "g", a)
			sender.GroupSend(ctx, "g", msg("before"))
			in.next(t)

			restart := b.outage(t, "r__group__g")
			gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := sender.GroupSend(gctx, "g", msg("lost"))
			cancel()
			if !errors.Is(err, canal.ErrUnavailable) {
				t.Fatalf("GroupSend with its master down: %v", err)
			}
			restart()
			ev := rc.next(t, 20*time.Second)
			t.Logf("%s: OnReconnect(%q, %v)", b.name, ev.host, ev.down)
			waitForWithin(t, "the subscription", 20*time.Second, func() bool { return b.subscribers(t, "r__group__g") == 1 })
			waitForWithin(t, "a group send after the restart", 20*time.Second, func() bool {
				gctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return sender.GroupSend(gctx, "g", msg("after")) == nil
			})
			if m := in.next(t); m.Type() != "after" {
				t.Fatalf("got %v", m)
			}
			if l.Stats().Reconnects < 1 {
				t.Fatalf("stats %+v", l.Stats())
			}
		})
	}
}

// TestRedisPubSubClusterSlotMove moves a subscribed channel's slot to another master:
// Redis unsubscribes it (sunsubscribe), and the layer subscribes it on the new owner.
func TestRedisPubSubClusterSlotMove(t *testing.T) {
	t.Parallel()
	b := startCluster(t)
	rc := make(reconnects, 16)
	l := b.pubsub(t, RedisPubSubOptions{Prefix: "m", OnReconnect: rc.hook})
	sender := b.pubsub(t, RedisPubSubOptions{Prefix: "m"})
	ctx := context.Background()
	a, in := attachInbox(t, l)
	l.GroupAdd(ctx, "room", a)
	name := "m__group__room"
	sender.GroupSend(ctx, "room", msg("before"))
	in.next(t)

	from := b.cluster.NodeFor(t, name)
	to := (from + 1) % len(b.nodes)
	slot := int64(keySlot(name))
	id := func(i int) string {
		v, err := b.nodes[i].Do(ctx, b.nodes[i].B().ClusterMyid().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	fromID, toID := id(from), id(to)
	setslot := func(i int, args ...string) {
		c := b.nodes[i]
		cmd := append([]string{"CLUSTER", "SETSLOT", strconv.FormatInt(slot, 10)}, args...)
		if err := c.Do(ctx, c.B().Arbitrary(cmd...).Build()).Error(); err != nil {
			t.Fatalf("node %d: %v: %v", i, cmd, err)
		}
	}
	// The slot holds no key: it moves by SETSLOT alone.
	setslot(to, "IMPORTING", fromID)
	setslot(from, "MIGRATING", toID)
	setslot(to, "NODE", toID)
	setslot(from, "NODE", toID)
	for i := range b.nodes {
		if i != from && i != to {
			setslot(i, "NODE", toID)
		}
	}
	ev := rc.next(t, 20*time.Second)
	t.Logf("OnReconnect(%q, %v)", ev.host, ev.down)
	if want := b.cluster.Addrs()[to]; ev.host != want {
		t.Fatalf("resubscribed on %q; want %q", ev.host, want)
	}
	if h := l.holder(name); h == nil || h.addr != b.cluster.Addrs()[to] {
		t.Fatalf("the group's subscription is on %v", h)
	}
	waitForWithin(t, "a group send after the move", 20*time.Second, func() bool {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return sender.GroupSend(gctx, "room", msg("after")) == nil
	})
	if m := in.next(t); m.Type() != "after" {
		t.Fatalf("got %v", m)
	}
}

// TestRedisSentinel runs both layers through a Sentinel and a failover: the layers
// follow the new master, report the gap, and work again.
func TestRedisSentinel(t *testing.T) {
	t.Parallel()
	s := canaltest.StartRedisSentinel(t)
	sopts := &SentinelOptions{MasterSet: s.MasterSet(), Addrs: []string{s.Addr()}}
	ctx := context.Background()
	coreRC, psRC := make(reconnects, 16), make(reconnects, 16)
	core, err := NewRedis(ctx, RedisOptions{Sentinel: sopts, OnReconnect: coreRC.hook, Logger: quietLogger,
		ClientOptions: fastClient})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { core.Close(ctx) })
	ps, err := NewRedisPubSub(ctx, RedisPubSubOptions{Sentinel: sopts, OnReconnect: psRC.hook, Logger: quietLogger,
		ClientOptions: fastClient})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close(ctx) })

	a, in := attachInbox(t, core)
	core.GroupAdd(ctx, "g", a)
	if err := core.GroupSend(ctx, "g", msg("before")); err != nil {
		t.Fatal(err)
	}
	in.next(t)
	pa, pin := attachInbox(t, ps)
	ps.GroupAdd(ctx, "g", pa)
	ps.GroupSend(ctx, "g", msg("before"))
	pin.next(t)
	// Everything went to the master.
	mc := s.Master().Client(t, func(o *rueidis.ClientOption) { o.ForceSingleClient = true })
	if n, _ := mc.Do(ctx, mc.B().Exists().Key("asgi:group:g").Build()).AsInt64(); n != 1 {
		t.Fatal("the group is not on the master")
	}

	promoted := s.Failover()
	t.Logf("failover to %s", promoted.Addr())
	ev := coreRC.next(t, 30*time.Second)
	t.Logf("core: OnReconnect(%q, %v)", ev.host, ev.down)
	ev = psRC.next(t, 30*time.Second)
	t.Logf("pubsub: OnReconnect(%q, %v)", ev.host, ev.down)
	waitForWithin(t, "a group send through the new master", 30*time.Second, func() bool {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return core.GroupSend(gctx, "g", msg("after")) == nil
	})
	if m := in.next(t); m.Type() != "after" {
		t.Fatalf("got %v", m)
	}
	waitForWithin(t, "a Pub/Sub group send through the new master", 30*time.Second, func() bool {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return ps.GroupSend(gctx, "g", msg("after")) == nil
	})
	if m := pin.next(t); m.Type() != "after" {
		t.Fatalf("got %v", m)
	}
	pc := promoted.Client(t, func(o *rueidis.ClientOption) { o.ForceSingleClient = true })
	if n, _ := pc.Do(ctx, pc.B().Exists().Key("asgi:group:g").Build()).AsInt64(); n != 1 {
		t.Fatal("the group (replicated before the failover) is not on the new master")
	}
}

// TestInteropSentinel runs Django (channels_redis' "sentinels"/"master_name" host
// entry) and a Go layer in Sentinel mode on the same master: messages cross both ways.
//
// It needs channels_redis 4.1 or later (Debian trixie, sid): 4.0's create_pool pops
// "master_name" and "sentinels" from the shared host settings, so every pool after
// the first (each async_to_sync call makes one) connects to localhost:6379 instead.
func TestInteropSentinel(t *testing.T) {
	t.Parallel()
	var suites []pySuite
	for _, s := range pySuites(t) {
		if s.name != "bookworm" {
			suites = append(suites, s)
		}
	}
	if len(suites) == 0 {
		t.Log("no channels_redis >= 4.1 unpacked (scripts/debian-django.sh trixie): Sentinel interop not tested")
		return
	}
	s := canaltest.StartRedisSentinel(t)
	host, port, _ := strings.Cut(s.Addr(), ":")
	portN, _ := strconv.Atoi(port)
	p := startPeer(t, suites[len(suites)-1], "", map[string]any{"hosts": []any{map[string]any{
		"sentinels": []any{[]any{host, portN}}, "master_name": s.MasterSet()}}})
	ctx := context.Background()
	l, err := NewRedis(ctx, RedisOptions{Sentinel: &SentinelOptions{MasterSet: s.MasterSet(), Addrs: []string{s.Addr()}},
		Logger: quietLogger, ClientOptions: fastClient})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(ctx) })
	goCh, in := attachInbox(t, l)
	if err := l.GroupAdd(ctx, "room", goCh); err != nil {
		t.Fatal(err)
	}
	d := p.newChannel()
	p.ok(map[string]any{"op": "group_add", "group": "room", "channel": d})
	p.ok(map[string]any{"op": "group_send", "group": "room", "py": `{'type': 'from.django', 'n': 1}`})
	if m := in.next(t); m.Type() != "from.django" || m["n"] != int64(1) {
		t.Fatalf("Go got %v", m)
	}
	if err := l.GroupSend(ctx, "room", msg("from.go", "n", 2)); err != nil {
		t.Fatal(err)
	}
	p.expect(d, `{'type': 'from.django', 'n': 1}`)
	p.expect(d, `{'type': 'from.go', 'n': 2}`)
}
