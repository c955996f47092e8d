package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/worker"
)

// Redis dies under a running worker and comes back (empty) on the same port: the
// worker backs off, logs once per episode, and handles new messages again.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	sender := redisLayer(t, srv.URL(), layers.RedisOptions{})
	logs := &canaltest.LogBuffer{}
	got := &recorder{}
	w := start(t, redisLayer(t, srv.URL(), layers.RedisOptions{}),
		worker.Channels{"thumbnails": worker.Types{"thumbnail.make": got.Handle}},
		worker.Options{MaxBackoff: 200 * time.Millisecond, Logger: logs.Logger()})

	send(t, sender, "thumbnails", canal.Message{"type": "thumbnail.make", "id": 1})
	eventually(t, "handled before the outage", func() bool { return len(got.got()) == 1 })

	srv.Kill()
	eventually(t, "receive errors", func() bool { return w.Stats().ReceiveErrors >= 3 })
	down, began := w.Stats().ReceiveErrors, time.Now()
	time.Sleep(time.Second)
	// Backoff 50 ms doubling to 200 ms: about 5 attempts a second, not a spin.
	n, limit := w.Stats().ReceiveErrors-down, uint64(time.Since(began)/(200*time.Millisecond))+2
	if n > limit {
		t.Fatalf("%d receive attempts in %v of outage (at most %d)", n, time.Since(began), limit)
	}
	srv.Restart()

	// The sender's pooled connections died with the server: retry its first send.
	ctx := context.Background()
	eventually(t, "a send after the restart", func() bool {
		err := sender.Send(ctx, "thumbnails", canal.Message{"type": "thumbnail.make", "id": 2})
		if err != nil && !errors.Is(err, canal.ErrUnavailable) {
			t.Fatal(err)
		}
		return err == nil
	})
	eventually(t, "handled after the outage", func() bool { return len(got.got()) == 2 })
	if lines := logs.Lines("receive failed"); len(lines) < 1 || len(lines) > 4 {
		t.Fatalf("%d 'receive failed' lines for one outage:\n%s", len(lines), logs)
	}
	if len(logs.Lines("receiving again")) != 1 {
		t.Fatalf("no recovery line:\n%s", logs)
	}
	if st := w.Stats(); st.Handled != 2 || st.Received != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A worker whose slots are all busy leaves messages in Redis, so the channel's
// capacity is what Send meets: canal.ErrChannelFull (Django: ChannelFull).
func TestRedisBusyWorkerFillsCapacity(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	sender := redisLayer(t, srv.URL(), layers.RedisOptions{Capacity: 5})
	release := make(chan struct{})
	w := start(t, redisLayer(t, srv.URL(), layers.RedisOptions{}),
		worker.Channels{"thumbnails": worker.HandlerFunc(func(ctx context.Context, _ canal.Message) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})}, worker.Options{Concurrency: 2})

	send(t, sender, "thumbnails", canal.Message{"type": "thumbnail.make"})
	send(t, sender, "thumbnails", canal.Message{"type": "thumbnail.make"})
	eventually(t, "2 in flight", func() bool { return w.Stats().InFlight == 2 })
	for range 5 {
		send(t, sender, "thumbnails", canal.Message{"type": "thumbnail.make"})
	}
	err := sender.Send(context.Background(), "thumbnails", canal.Message{"type": "thumbnail.make"})
	if !errors.Is(err, canal.ErrChannelFull) {
		t.Fatalf("send to a full channel: %v", err)
	}
	close(release)
	eventually(t, "7 handled", func() bool { return w.Stats().Handled == 7 })
}
