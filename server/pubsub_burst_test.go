package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
)

type burstMember struct{}

// TestPubSubBurstReachesIdleReaders: a burst of group messages through the Redis
// Pub/Sub layer, sent back to back, reaches every member that reads, in order, with
// no 1013 (the old frame-count queue closed idle clients after ~400 frames of 60 KB
// in all, far below their socket buffers).
func TestPubSubBurstReachesIdleReaders(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	ctx := ctxT(t)
	layer, err := layers.NewRedisPubSub(ctx, layers.RedisPubSubOptions{Hosts: []string{r.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = layer.Close(context.Background()) })
	h, err := consumer.New(func() *burstMember { return &burstMember{} }, consumer.Options[*burstMember]{
		Layer:  layer,
		Groups: []string{"burst"},
		Frames: map[string]consumer.FrameFunc{
			"burst.message": consumer.JSONFrame(func(m canal.Message) any { return map[string]any{"n": m["n"]} }),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := canaltest.NewServer(t, h, fastOptions())
	// 500: past the old 256-frame queue (which closed clients after 321–454 frames), and
	// within a connection's SendQueue + EventQueue even if the writers do not run at
	// all during the burst (a loaded CI machine), so nothing may be refused.
	const members, n = 20, 500
	var got []<-chan []canal.Frame
	for range members {
		got = append(got, drain(t, mustDial(t, s, "/", canaltest.DialOptions{}), n))
	}
	time.Sleep(100 * time.Millisecond) // the subscriptions are in place
	start := time.Now()
	for i := range n {
		if err := layer.GroupSend(ctx, "burst", canal.Message{"type": "burst.message", "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d group messages sent in %v", n, time.Since(start))
	for m, ch := range got {
		fs := <-ch
		if len(fs) != n {
			t.Fatalf("member %d got %d of %d frames (Stats %+v)", m, len(fs), n, s.Stats())
		}
		for i, f := range fs {
			if want := fmt.Sprintf(`{"n":%d}`, i); string(f.Data) != want {
				t.Fatalf("member %d: frame %d is %s", m, i, f.Data)
			}
		}
	}
	if st := s.Stats(); st.SlowConsumers != 0 || st.EventsRefused != 0 {
		t.Fatalf("Stats %+v: a reading member lost frames", st)
	}
}
