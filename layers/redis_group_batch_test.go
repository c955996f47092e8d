package layers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// TestRedisGroupManyBatches joins and leaves several groups at once, on one Redis and
// sharded over two: each group ends on its own host in channels_redis' form (ZADD
// score = join time, EXPIRE = GroupExpiry), is remembered for repair after an
// outage, delivers GroupSend, and is left by GroupDiscardMany.
func TestRedisGroupManyBatches(t *testing.T) {
	t.Parallel()
	for _, hosts := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d hosts", hosts), func(t *testing.T) {
			t.Parallel()
			var srvs []*canaltest.Redis
			var urls []string
			for range hosts {
				s := canaltest.StartRedis(t)
				srvs, urls = append(srvs, s), append(urls, s.URL())
			}
			l := newRedisLayer(t, srvs[0], RedisOptions{Hosts: urls})
			ctx := context.Background()
			a, in := attachInbox(t, l)
			groups := []string{"room", "chat_lobby", "canal.user.7", "news", "bench", "alpha"}
			before := float64(time.Now().UnixMicro()) / 1e6
			if err := l.GroupAddMany(ctx, groups, a); err != nil {
				t.Fatal(err)
			}
			used := map[int]bool{}
			for _, g := range groups {
				h := shardIndex(g, hosts)
				used[h] = true
				c := srvs[h].Client(t)
				key := "asgi:group:" + g
				score, err := c.Do(ctx, c.B().Zscore().Key(key).Member(a).Build()).AsFloat64()
				if err != nil || score < before-1 || score > before+5 {
					t.Errorf("%s on host %d: score %v, %v; want the join time (~%v)", key, h, score, err, before)
				}
				if ttl, err := c.Do(ctx, c.B().Ttl().Key(key).Build()).AsInt64(); err != nil || ttl < 86000 {
					t.Errorf("%s TTL %d, %v; want GroupExpiry (86400 s)", key, ttl, err)
				}
				l.gmu.Lock()
				_, remembered := l.members[membership{g, a}]
				l.gmu.Unlock()
				if !remembered {
					t.Errorf("%s not remembered for repair", g)
				}
				if err := l.GroupSend(ctx, g, msg("to-"+g)); err != nil {
					t.Fatal(err)
				}
				if m := in.next(t); m.Type() != "to-"+g {
					t.Fatalf("got %v, want to-%s", m, g)
				}
			}
			if len(used) != hosts {
				t.Fatalf("the groups used %d of %d hosts: pick other names", len(used), hosts)
			}

			if err := l.GroupDiscardMany(ctx, groups, a); err != nil {
				t.Fatal(err)
			}
			for _, g := range groups {
				c := srvs[shardIndex(g, hosts)].Client(t)
				if n, err := c.Do(ctx, c.B().Zcard().Key("asgi:group:"+g).Build()).AsInt64(); err != nil || n != 0 {
					t.Errorf("%s: %d members after GroupDiscardMany, %v", g, n, err)
				}
			}
			l.gmu.Lock()
			left := len(l.members)
			l.gmu.Unlock()
			if left != 0 {
				t.Errorf("%d memberships still remembered after GroupDiscardMany", left)
			}
		})
	}
}

// TestRedisGroupManyErrors: a bad name fails before any I/O, a Redis that is down
// gives canal.ErrUnavailable, a closed layer canal.ErrLayerClosed; no or one group
// work as GroupAdd does.
func TestRedisGroupManyErrors(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	l := newRedisLayer(t, srv, RedisOptions{ClientOptions: fastClient})
	ctx := context.Background()
	a, _ := attachInbox(t, l)
	if err := l.GroupAddMany(ctx, nil, a); err != nil {
		t.Errorf("no groups: %v", err)
	}
	if err := l.GroupAddMany(ctx, []string{"one"}, a); err != nil {
		t.Errorf("one group: %v", err)
	}
	for _, call := range []func() error{
		func() error { return l.GroupAddMany(ctx, []string{"ok", "bad name"}, a) },
		func() error { return l.GroupDiscardMany(ctx, []string{"ok", "bad name"}, a) },
	} {
		if err := call(); !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("bad group name: %v; want canal.ErrInvalidName", err)
		}
	}
	srv.Kill()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := l.GroupAddMany(dctx, []string{"x", "y"}, a); !errors.Is(err, canal.ErrUnavailable) {
		t.Errorf("GroupAddMany with Redis down: %v; want canal.ErrUnavailable", err)
	}
	if err := l.GroupDiscardMany(dctx, []string{"x", "y"}, a); !errors.Is(err, canal.ErrUnavailable) {
		t.Errorf("GroupDiscardMany with Redis down: %v; want canal.ErrUnavailable", err)
	}
	_ = l.Close(ctx)
	if err := l.GroupAddMany(ctx, []string{"x", "y"}, a); !errors.Is(err, canal.ErrLayerClosed) {
		t.Errorf("GroupAddMany after Close: %v; want canal.ErrLayerClosed", err)
	}
}

// TestRedisGroupManyCluster joins groups whose keys live on different masters of a
// Redis Cluster in one GroupAddMany (the client splits the pipeline by slot), then
// leaves them in one GroupDiscardMany.
func TestRedisGroupManyCluster(t *testing.T) {
	t.Parallel()
	b := startCluster(t)
	l := b.core(t, RedisOptions{Prefix: b.prefix()})
	ctx := context.Background()
	a, in := attachInbox(t, l)
	groups := []string{"room", "chat_lobby", "canal.user.7", "news", "bench", "alpha"}
	nodes := map[int]bool{}
	for _, g := range groups {
		nodes[b.cluster.NodeFor(t, l.prefix+":group:"+g)] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("the groups' keys are on %d master(s): pick other names", len(nodes))
	}
	if err := l.GroupAddMany(ctx, groups, a); err != nil {
		t.Fatal(err)
	}
	c := b.client
	for _, g := range groups {
		key := l.prefix + ":group:" + g
		if _, err := c.Do(ctx, c.B().Zscore().Key(key).Member(a).Build()).AsFloat64(); err != nil {
			t.Errorf("%s: ZSCORE: %v; want the member", key, err)
		}
		if ttl, err := c.Do(ctx, c.B().Ttl().Key(key).Build()).AsInt64(); err != nil || ttl < 86000 {
			t.Errorf("%s TTL %d, %v; want GroupExpiry (86400 s)", key, ttl, err)
		}
		if err := l.GroupSend(ctx, g, msg("to-"+g)); err != nil {
			t.Fatal(err)
		}
		if m := in.next(t); m.Type() != "to-"+g {
			t.Fatalf("got %v, want to-%s", m, g)
		}
	}
	if err := l.GroupDiscardMany(ctx, groups, a); err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if b.exists(t, l.prefix+":group:"+g) {
			n, _ := c.Do(ctx, c.B().Zcard().Key(l.prefix+":group:"+g).Build()).AsInt64()
			if n != 0 {
				t.Errorf("%s: %d members after GroupDiscardMany", g, n)
			}
		}
	}
}
