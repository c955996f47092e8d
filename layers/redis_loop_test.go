package layers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// A process's channels share one Redis queue of Capacity (channels_redis counts
// capacity per key), and group_send skips a full key silently: the receive loop must
// keep popping while routing is slow, or whole group messages are lost for every
// member (issue 9's stalled burst).
func TestReceiveLoopDrainsWhileRoutingIsSlow(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	ctx := context.Background()
	recv := newRedisLayer(t, srv, RedisOptions{})
	send := newRedisLayer(t, srv, RedisOptions{})

	const n = 400 // four times the default capacity
	var got atomic.Int64
	name, detach, err := recv.Attach(ctx, "", func(canal.Message) bool {
		time.Sleep(2 * time.Millisecond) // routing slower than the publisher
		got.Add(1)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	if err := recv.GroupAdd(ctx, "slow", name); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := send.GroupSend(ctx, "slow", canal.Message{"type": "m", "i": i}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := got.Load(); g != n {
		t.Fatalf("delivered %d of %d group messages (receiver %+v, sender %+v); want all", g, n, recv.Stats(), send.Stats())
	}
	if s := send.Stats(); s.GroupFull != 0 {
		t.Errorf("GroupFull = %d; want 0", s.GroupFull)
	}
}

// When routing stops altogether, what the loop has popped stays within redisPopAhead
// messages and ReceiveBuffer bytes, and Redis' own capacity applies to the rest, as
// with channels_redis.
func TestReceiveLoopPopAheadIsBounded(t *testing.T) {
	t.Parallel()
	const capacity = 100 // channels_redis' default, in Redis
	tests := []struct {
		name        string
		opts        RedisOptions
		n, text     int // messages sent, bytes of text in each
		least, most int // delivered after the stall
	}{
		// The one being routed, redisPopAhead handed over, capacity in Redis.
		{"messages", RedisOptions{}, redisPopAhead + 600, 0, redisPopAhead, 1 + redisPopAhead + capacity},
		// 8 KB messages within 64 KiB: 8 counted (the one being routed included),
		// and one more in the loop's hands, waiting for room.
		{"bytes", RedisOptions{ReceiveBuffer: 64 << 10}, 300, 8000, capacity, 8 + 1 + capacity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := canaltest.StartRedis(t)
			ctx := context.Background()
			recv := newRedisLayer(t, srv, tt.opts)
			send := newRedisLayer(t, srv, RedisOptions{})

			release := make(chan struct{})
			var got atomic.Int64
			name, detach, err := recv.Attach(ctx, "", func(canal.Message) bool {
				<-release // a router stuck on its first message
				got.Add(1)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			defer detach()
			if err := recv.GroupAdd(ctx, "stuck", name); err != nil {
				t.Fatal(err)
			}
			text := strings.Repeat("x", tt.text)
			for i := range tt.n {
				if err := send.GroupSend(ctx, "stuck", canal.Message{"type": "m", "i": i, "text": text}); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(200 * time.Millisecond) // let the loop pop what it may
			close(release)
			deadline := time.Now().Add(30 * time.Second)
			for got.Load() < int64(tt.most) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				if s := recv.Stats(); got.Load() > 0 && s.Delivered == uint64(got.Load()) {
					time.Sleep(300 * time.Millisecond) // settled?
					if recv.Stats().Delivered == s.Delivered {
						break
					}
				}
			}
			g := int(got.Load())
			if g > tt.most {
				t.Fatalf("delivered %d after a stall; the loop popped past its bound (%d)", g, tt.most)
			}
			if g < tt.least {
				t.Fatalf("delivered %d after a stall; want at least %d", g, tt.least)
			}
			if full := send.Stats().GroupFull; full == 0 {
				t.Errorf("GroupFull = 0; want the messages past the bound counted as skipped")
			}
		})
	}
}
