package consumer_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
)

// redisWrites counts the writes a rueidis client sends that carry a given command:
// one write is one round trip of the commands it holds.
type redisWrites struct {
	mu     sync.Mutex
	counts map[string]int
}

// dial is a rueidis DialFn whose connections count their writes by command.
func (w *redisWrites) dial(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, w: w}, nil
}

func (w *redisWrites) get(cmd string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[cmd]
}

type countingConn struct {
	net.Conn
	w *redisWrites
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	for _, cmd := range []string{"ZADD", "EXPIRE", "ZREM"} {
		if bytes.Contains(p, []byte("\r\n"+cmd+"\r\n")) {
			c.w.counts[cmd]++
		}
	}
	c.w.mu.Unlock()
	return c.Conn.Write(p)
}

// joiner joins its room in Connect (unless room is ""), then accepts and says which
// groups it is in: the benchmark's consumer.
type joiner struct{ room string }

func (j *joiner) Connect(ctx context.Context, c *consumer.Conn) error {
	if j.room != "" {
		if err := c.GroupAdd(ctx, j.room); err != nil {
			return err
		}
	}
	if err := c.Accept(); err != nil {
		return err
	}
	return c.SendText("joined " + strings.Join(c.Groups(), ","))
}

// TestJoinsAndLeavesInOneRoundTrip checks that a connection's first groups, the
// user's own included, are joined in one round trip to Redis (one write carrying all of their
// ZADDs and EXPIREs) and left in one (all the ZREMs), whether they come from
// Options.Groups, Connect's GroupAdd or only the user's group at the accept; and that
// Redis holds each membership in channels_redis' form meanwhile.
func TestJoinsAndLeavesInOneRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		query  string
		groups []string // Options.Groups
		room   string   // joined in Connect
		want   []string // every group the connection is in
		joins  int      // round trips to join them
	}{
		{"user group and Connect's GroupAdd", "user=7&name=a", nil, "room", []string{"canal.user.7", "room"}, 1},
		{"user group and Options.Groups", "user=8&name=b", []string{"g1", "g2"}, "", []string{"canal.user.8", "g1", "g2"}, 1},
		// Options.Groups are joined before Connect runs, Connect's own after.
		{"all three", "user=9&name=c", []string{"g1"}, "room", []string{"canal.user.9", "g1", "room"}, 2},
		// Joined again in Connect: its join time refreshed, listed once.
		{"a group twice", "user=11&name=e", []string{"room"}, "room", []string{"canal.user.11", "room"}, 2},
		{"user group alone, at the accept", "user=10&name=d", nil, "", []string{"canal.user.10"}, 1},
		{"anonymous, one group", "", nil, "room", []string{"room"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs := canaltest.StartRedis(t)
			w := &redisWrites{counts: map[string]int{}}
			layer, err := layers.NewRedis(ctxT(t), layers.RedisOptions{Hosts: []string{rs.URL()}, Logger: quiet,
				ClientOptions: func(o *rueidis.ClientOption) { o.DialCtxFn = w.dial }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = layer.Close(context.Background()) })
			h, err := consumer.New(func() *joiner { return &joiner{room: tc.room} }, consumer.Options[*joiner]{
				Layer: layer, Groups: tc.groups, Logger: quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			s := serve(t, asUser(h))
			c := dialAs(t, s, tc.query)
			expectText(t, c, "joined "+strings.Join(tc.want, ","))

			if got := w.get("ZADD"); got != tc.joins {
				t.Errorf("joins took %d writes carrying ZADD, want %d", got, tc.joins)
			}
			if got := w.get("EXPIRE"); got != tc.joins {
				t.Errorf("joins took %d writes carrying EXPIRE, want %d", got, tc.joins)
			}
			rc := rs.Client(t)
			channel := ""
			for _, g := range tc.want {
				key := "asgi:group:" + g
				members, err := rc.Do(ctxT(t), rc.B().Zrange().Key(key).Min("0").Max("-1").Build()).AsStrSlice()
				if err != nil || len(members) != 1 {
					t.Fatalf("%s holds %q, %v; want the connection's channel", key, members, err)
				}
				if channel == "" {
					channel = members[0]
				} else if members[0] != channel {
					t.Errorf("%s holds %q, want %q", key, members[0], channel)
				}
				if ttl, err := rc.Do(ctxT(t), rc.B().Ttl().Key(key).Build()).AsInt64(); err != nil || ttl < 86000 {
					t.Errorf("%s TTL %d, %v; want the group expiry (86400 s)", key, ttl, err)
				}
			}

			_ = c.Close(canal.CloseNormal)
			deadline := time.Now().Add(5 * time.Second)
			for w.get("ZREM") == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			// Let a second write, if any, reach the counter before counting.
			time.Sleep(50 * time.Millisecond)
			if got := w.get("ZREM"); got != 1 {
				t.Errorf("leaves took %d writes carrying ZREM, want 1", got)
			}
			for _, g := range tc.want {
				n, err := rc.Do(ctxT(t), rc.B().Zcard().Key("asgi:group:"+g).Build()).AsInt64()
				if err != nil || n != 0 {
					t.Errorf("group %s has %d members after the close, %v; want 0", g, n, err)
				}
			}
		})
	}
}
