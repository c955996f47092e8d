package layers

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// deliveryCounter counts deliveries and signals when a target is reached.
type deliveryCounter struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func newDeliveryCounter() *deliveryCounter { return &deliveryCounter{done: make(chan struct{}, 1)} }

func (d *deliveryCounter) deliver(canal.Message) bool {
	if d.n.Add(1) == d.target.Load() {
		d.done <- struct{}{}
	}
	return true
}

// expect waits until n deliveries in all have been made. A signal only wakes it;
// the count decides, so a stale signal costs one more look.
func (d *deliveryCounter) expect(b *testing.B, n int64) {
	d.target.Store(n)
	timeout := time.After(30 * time.Second)
	for d.n.Load() < n {
		select {
		case <-d.done:
		case <-timeout:
			b.Fatalf("delivered %d of %d", d.n.Load(), n)
		}
	}
}

// BenchmarkRedisGroupSend measures a group message from GroupSend until every member
// has it: members are channels attached in processes (layers) sharing one Redis, so
// one process is one queue key and gets one copy listing its members.
func BenchmarkRedisGroupSend(b *testing.B) {
	srv := canaltest.StartRedis(b)
	for _, tc := range []struct{ members, processes int }{
		{10, 1}, {1000, 1}, {10000, 1}, {1000, 10},
	} {
		b.Run(fmt.Sprintf("members=%d/processes=%d", tc.members, tc.processes), func(b *testing.B) {
			ctx := context.Background()
			sender := newRedisLayer(b, srv, RedisOptions{Prefix: fmt.Sprintf("bench%d.%d:", tc.members, tc.processes)})
			sender.Flush(ctx)
			counter := newDeliveryCounter()
			var layers []*Redis
			for range tc.processes {
				layers = append(layers, newRedisLayer(b, srv, RedisOptions{Prefix: sender.prefix}))
			}
			for i := range tc.members {
				l := layers[i%tc.processes]
				name, _, err := l.Attach(ctx, "", counter.deliver)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.GroupAdd(ctx, "room", name); err != nil {
					b.Fatal(err)
				}
			}
			message := msg("chat.message", "text", "hello")
			b.ReportAllocs()
			var sent int64
			for b.Loop() {
				if err := sender.GroupSend(ctx, "room", message); err != nil {
					b.Fatal(err)
				}
				sent++
				counter.expect(b, sent*int64(tc.members))
			}
			b.ReportMetric(float64(tc.members)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
			for _, l := range layers {
				if st := l.Stats(); st.Dropped != 0 || st.Malformed != 0 {
					b.Fatalf("stats %+v", st)
				}
			}
		})
	}
}

// BenchmarkRedisSend measures Send to an attached channel of another process until
// its delivery, and a normal channel's Send then Receive.
func BenchmarkRedisSend(b *testing.B) {
	srv := canaltest.StartRedis(b)
	ctx := context.Background()
	message := msg("chat.message", "text", "hello")
	b.Run("attached", func(b *testing.B) {
		sender := newRedisLayer(b, srv, RedisOptions{})
		receiver := newRedisLayer(b, srv, RedisOptions{})
		counter := newDeliveryCounter()
		name, _, err := receiver.Attach(ctx, "", counter.deliver)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		var sent int64
		for b.Loop() {
			if err := sender.Send(ctx, name, message); err != nil {
				b.Fatal(err)
			}
			sent++
			counter.expect(b, sent)
		}
	})
	b.Run("queue", func(b *testing.B) {
		l := newRedisLayer(b, srv, RedisOptions{})
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Send(ctx, "worker", message); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Receive(ctx, "worker"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
