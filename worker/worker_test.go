package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/worker"
)

// waitTimeout bounds every wait of these tests: generous, for a loaded machine.
const waitTimeout = 20 * time.Second

func memoryLayer(t testing.TB, opts layers.MemoryOptions) *layers.Memory {
	t.Helper()
	l, err := layers.NewMemory(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// running is a Worker whose Run goroutine the test controls.
type running struct {
	*worker.Worker
	stop func()     // cancels Run's context
	done chan error // Run's result
}

// start runs a new worker until the test ends (or stop).
func start(t testing.TB, layer canal.Layer, routes worker.Channels, opts worker.Options) *running {
	t.Helper()
	w, err := worker.New(layer, routes, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Worker: w, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return")
		}
	})
	return r
}

// wait returns Run's result once it returned.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
		return nil
	}
}

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func send(t testing.TB, l canal.Layer, channel string, msg canal.Message) {
	t.Helper()
	if err := l.Send(context.Background(), channel, msg); err != nil {
		t.Fatalf("send to %s: %v", channel, err)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	var mu sync.Mutex
	got := map[string][]int64{}
	record := func(name string) worker.HandlerFunc {
		return func(_ context.Context, m canal.Message) error {
			mu.Lock()
			defer mu.Unlock()
			got[name] = append(got[name], m["id"].(int64))
			return nil
		}
	}
	w := start(t, l, worker.Channels{
		"thumbnails": worker.Types{
			"thumbnail.make":   record("make"),
			"thumbnail.delete": record("delete"),
		},
		"emails": record("emails"), // a plain function takes every type
	}, worker.Options{Concurrency: 2})

	send(t, l, "thumbnails", canal.Message{"type": "thumbnail.make", "id": int64(1)})
	send(t, l, "thumbnails", canal.Message{"type": "thumbnail.delete", "id": int64(2)})
	send(t, l, "emails", canal.Message{"type": "email.send", "id": int64(3)})
	send(t, l, "emails", canal.Message{"type": "anything", "id": int64(4)})
	eventually(t, "4 handled", func() bool { return w.Stats().Handled == 4 })

	mu.Lock()
	defer mu.Unlock()
	want := map[string][]int64{"make": {1}, "delete": {2}}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s got %v, want %v", k, got[k], v)
		}
	}
	if len(got["emails"]) != 2 {
		t.Errorf("emails got %v", got["emails"])
	}
	st := w.Stats()
	if st.Received != 4 || st.Failed+st.Panics+st.Unhandled != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnknownTypeDroppedCountedLoggedOnce(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	logs := &canaltest.LogBuffer{}
	var made atomic.Int64
	w := start(t, l, worker.Channels{
		"thumbnails": worker.Types{"thumbnail.make": func(context.Context, canal.Message) error {
			made.Add(1)
			return nil
		}},
	}, worker.Options{Logger: logs.Logger(), Concurrency: 1})

	for range 50 {
		send(t, l, "thumbnails", canal.Message{"type": "thumbnail.resize", "secret": "s3cret-payload"})
	}
	send(t, l, "thumbnails", canal.Message{"type": "thumbnail.make"})
	eventually(t, "the known type handled", func() bool { return made.Load() == 1 })
	eventually(t, "50 unhandled", func() bool { return w.Stats().Unhandled == 50 })

	lines := logs.Lines("no handler")
	if len(lines) == 0 || len(lines) > 2 { // one per second of the run at most
		t.Fatalf("%d log lines for 50 unhandled messages:\n%s", len(lines), logs)
	}
	if !strings.Contains(lines[0], "thumbnail.resize") || !strings.Contains(lines[0], "channel=thumbnails") {
		t.Errorf("log line lacks type or channel: %s", lines[0])
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("payload logged:\n%s", logs)
	}
	if st := w.Stats(); st.Handled != 1 || st.Failed != 0 || st.Received != 51 {
		t.Errorf("stats %+v", st)
	}
}

func TestTypesDispatch(t *testing.T) {
	t.Parallel()
	called := ""
	types := worker.Types{
		"thumbnail.make": func(_ context.Context, m canal.Message) error {
			called = m.Type()
			return nil
		},
	}
	for _, tc := range []struct {
		name string
		msg  canal.Message
		want error
	}{
		{"registered", canal.Message{"type": "thumbnail.make"}, nil},
		{"unknown", canal.Message{"type": "thumbnail.other"}, worker.ErrNoHandler},
		{"no type", canal.Message{"id": 1}, canal.ErrInvalidMessage},
		{"type not a string", canal.Message{"type": []byte("thumbnail.make")}, canal.ErrInvalidMessage},
		{"private", canal.Message{"type": "_secret"}, canal.ErrInvalidMessage},
		{"leading dot", canal.Message{"type": ".make"}, canal.ErrInvalidMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called = ""
			err := types.Handle(context.Background(), tc.msg)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if (called != "") != (tc.want == nil) {
				t.Fatalf("called %q", called)
			}
		})
	}
}

// Concurrency is a hard cap, and a busy worker leaves the other messages in the
// layer, where another receiver (another worker process) takes them.
func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	release := make(chan struct{})
	var now, peak atomic.Int64
	w := start(t, l, worker.Channels{
		"jobs": worker.HandlerFunc(func(ctx context.Context, _ canal.Message) error {
			n := now.Add(1)
			defer now.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}),
	}, worker.Options{Concurrency: 3})

	for i := range 10 {
		send(t, l, "jobs", canal.Message{"type": "job", "i": i})
	}
	eventually(t, "3 in flight", func() bool { return w.Stats().InFlight == 3 })
	time.Sleep(100 * time.Millisecond) // room for a fourth, if the cap leaked
	if st := w.Stats(); st.InFlight != 3 || st.Received != 3 {
		t.Fatalf("stats with 3 handlers blocked: %+v", st)
	}
	// The other 7 are still in the layer.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if m, err := l.Receive(ctx, "jobs"); err != nil || m.Type() != "job" {
		t.Fatalf("another receiver got %v, %v", m, err)
	}
	close(release)
	eventually(t, "9 handled", func() bool { return w.Stats().Handled == 9 })
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrency %d, want 3", p)
	}
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	logs := &canaltest.LogBuffer{}
	w := start(t, l, worker.Channels{
		"jobs": worker.Types{
			"boom": func(context.Context, canal.Message) error { panic("kaboom") },
			"ok":   func(context.Context, canal.Message) error { return nil },
		},
	}, worker.Options{Logger: logs.Logger(), Concurrency: 1})

	send(t, l, "jobs", canal.Message{"type": "boom"})
	send(t, l, "jobs", canal.Message{"type": "ok"})
	send(t, l, "jobs", canal.Message{"type": "boom"})
	send(t, l, "jobs", canal.Message{"type": "ok"})
	eventually(t, "two handled after panics", func() bool { return w.Stats().Handled == 2 })
	eventually(t, "two panics", func() bool { return w.Stats().Panics == 2 })
	if st := w.Stats(); st.InFlight != 0 || st.Received != 4 {
		t.Fatalf("stats %+v", st)
	}
	if lines := logs.Lines("handler panicked"); len(lines) != 1 || !strings.Contains(lines[0], "kaboom") {
		t.Fatalf("panic log lines: %q", lines)
	}
}

func TestHandlerErrorCountedNoPayload(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	logs := &canaltest.LogBuffer{}
	w := start(t, l, worker.Channels{
		"jobs": worker.HandlerFunc(func(context.Context, canal.Message) error {
			return errors.New("disk full")
		}),
	}, worker.Options{Logger: logs.Logger()})

	send(t, l, "jobs", canal.Message{"type": "job", "token": "s3cret-payload"})
	eventually(t, "a failure", func() bool { return w.Stats().Failed == 1 })
	if lines := logs.Lines("handler failed"); len(lines) != 1 || !strings.Contains(lines[0], "disk full") {
		t.Fatalf("log lines: %q", lines)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Fatalf("payload logged:\n%s", logs)
	}
}

// Cancelling Run stops receiving at once and waits for running handlers.
func TestGracefulDrain(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	release := make(chan struct{})
	var sawCancel atomic.Bool
	w := start(t, l, worker.Channels{
		"jobs": worker.HandlerFunc(func(ctx context.Context, _ canal.Message) error {
			<-release
			sawCancel.Store(ctx.Err() != nil)
			return nil
		}),
	}, worker.Options{Concurrency: 2, DrainTimeout: waitTimeout})

	send(t, l, "jobs", canal.Message{"type": "job"})
	send(t, l, "jobs", canal.Message{"type": "job"})
	eventually(t, "2 in flight", func() bool { return w.Stats().InFlight == 2 })
	w.stop()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-w.done:
		t.Fatalf("Run returned %v with handlers running", err)
	default:
	}
	send(t, l, "jobs", canal.Message{"type": "late"}) // sent after the stop: left in the layer
	close(release)
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := w.Stats(); st.Handled != 2 || st.Received != 2 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	if sawCancel.Load() {
		t.Fatal("a handler's context was cancelled before the drain timeout")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if m, err := l.Receive(ctx, "jobs"); err != nil || m.Type() != "late" {
		t.Fatalf("late message: %v, %v", m, err)
	}
}

func TestDrainTimeout(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	returned := make(chan struct{})
	w := start(t, l, worker.Channels{
		"jobs": worker.HandlerFunc(func(ctx context.Context, _ canal.Message) error {
			defer close(returned)
			<-ctx.Done() // only the drain timeout ends it
			return ctx.Err()
		}),
	}, worker.Options{DrainTimeout: 100 * time.Millisecond})

	send(t, l, "jobs", canal.Message{"type": "job"})
	eventually(t, "in flight", func() bool { return w.Stats().InFlight == 1 })
	began := time.Now()
	w.stop()
	err := w.wait(t)
	if !errors.Is(err, worker.ErrDrainTimeout) {
		t.Fatalf("Run: %v, want ErrDrainTimeout", err)
	}
	if d := time.Since(began); d < 100*time.Millisecond {
		t.Fatalf("returned after %v, before the drain timeout", d)
	}
	select {
	case <-returned:
	case <-time.After(waitTimeout):
		t.Fatal("the handler's context was not cancelled")
	}
	eventually(t, "the failure counted", func() bool { return w.Stats().Failed == 1 })
}

func TestLayerClosedEndsRun(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	w := start(t, l, worker.Channels{
		"a": worker.HandlerFunc(func(context.Context, canal.Message) error { return nil }),
		"b": worker.HandlerFunc(func(context.Context, canal.Message) error { return nil }),
	}, worker.Options{})
	time.Sleep(20 * time.Millisecond)
	l.Close(context.Background())
	if err := w.wait(t); !errors.Is(err, canal.ErrLayerClosed) {
		t.Fatalf("Run: %v, want ErrLayerClosed", err)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	w, err := worker.New(l, worker.Channels{"a": worker.Types{}}, worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatalf("Run on a done context: %v", err)
	}
	if err := w.Run(ctx); !errors.Is(err, worker.ErrStarted) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	ok := worker.HandlerFunc(func(context.Context, canal.Message) error { return nil })
	for _, tc := range []struct {
		name   string
		layer  canal.Layer
		routes worker.Channels
		opts   worker.Options
		want   string
	}{
		{"nil layer", nil, worker.Channels{"a": ok}, worker.Options{}, "nil layer"},
		{"no channels", l, nil, worker.Options{}, "no channels"},
		{"bad name", l, worker.Channels{"a b": ok}, worker.Options{}, "invalid channel"},
		{"long name", l, worker.Channels{strings.Repeat("a", 100): ok}, worker.Options{}, "invalid channel"},
		{"process channel", l, worker.Channels{"specific.x!y": ok}, worker.Options{}, "process-specific"},
		{"nil handler", l, worker.Channels{"a": nil}, worker.Options{}, `nil handler for channel "a"`},
		{"nil func", l, worker.Channels{"a": worker.HandlerFunc(nil)}, worker.Options{}, `nil handler for channel "a"`},
		{"nil type func", l, worker.Channels{"a": worker.Types{"x.y": nil}}, worker.Options{}, `nil function for type "x.y"`},
		{"private type", l, worker.Channels{"a": worker.Types{"_x": ok}}, worker.Options{}, "private handler"},
		{"empty type", l, worker.Channels{"a": worker.Types{"": ok}}, worker.Options{}, "empty"},
		{"concurrency below channels", l, worker.Channels{"a": ok, "b": ok}, worker.Options{Concurrency: 1}, "below the 2 channels"},
		{"negative concurrency", l, worker.Channels{"a": ok}, worker.Options{Concurrency: -1}, "negative"},
		{"negative drain", l, worker.Channels{"a": ok}, worker.Options{DrainTimeout: -1}, "negative"},
		{"negative backoff", l, worker.Channels{"a": ok}, worker.Options{MaxBackoff: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := worker.New(tc.layer, tc.routes, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "worker: ") {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	w, err := worker.New(l, worker.Channels{"a": ok, "b": ok, "c": ok}, worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Concurrency() < 3 {
		t.Fatalf("default concurrency %d for 3 channels", w.Concurrency())
	}
}

func TestReply(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{ChannelCapacity: []layers.Capacity{{Pattern: "tiny*", Size: 1}}})
	ctx := context.Background()
	back, err := l.NewChannel(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	w := start(t, l, worker.Channels{
		"thumbnails": worker.Types{"thumbnail.make": func(ctx context.Context, m canal.Message) error {
			return worker.Reply(ctx, l, m, canal.Message{"type": "thumbnail.done", "id": m["id"]})
		}},
	}, worker.Options{})
	send(t, l, "thumbnails", canal.Message{"type": "thumbnail.make", "id": 7, worker.ReplyChannel: back})
	rctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	m, err := l.Receive(rctx, back)
	if err != nil || m.Type() != "thumbnail.done" || m["id"] != 7 {
		t.Fatalf("reply %v, %v", m, err)
	}
	eventually(t, "handled", func() bool { return w.Stats().Handled == 1 })

	if err := worker.Reply(ctx, l, canal.Message{"type": "x"}, canal.Message{"type": "y"}); !errors.Is(err, worker.ErrNoReplyChannel) {
		t.Fatalf("no reply_channel: %v", err)
	}
	if err := worker.Reply(ctx, l, canal.Message{worker.ReplyChannel: 5}, canal.Message{"type": "y"}); !errors.Is(err, worker.ErrNoReplyChannel) {
		t.Fatalf("reply_channel not a string: %v", err)
	}
	to := canal.Message{worker.ReplyChannel: "tiny"}
	if err := worker.Reply(ctx, l, to, canal.Message{"type": "y"}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Reply(ctx, l, to, canal.Message{"type": "y"}); !errors.Is(err, canal.ErrChannelFull) {
		t.Fatalf("full reply channel: %v", err)
	}
}

// flaky is a layer whose Receive fails while down is set: the narrow edge of a
// layer that cannot reach its backend (the real outage is TestRedisOutage).
type flaky struct {
	canal.Layer
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flaky) Receive(ctx context.Context, channel string) (canal.Message, error) {
	if f.down.Load() {
		f.calls.Add(1)
		return nil, fmt.Errorf("test: %w", canal.ErrUnavailable)
	}
	return f.Layer.Receive(ctx, channel)
}

func TestReceiveErrorsBackOff(t *testing.T) {
	t.Parallel()
	mem := memoryLayer(t, layers.MemoryOptions{})
	l := &flaky{Layer: mem}
	l.down.Store(true)
	logs := &canaltest.LogBuffer{}
	w := start(t, l, worker.Channels{
		"jobs": worker.HandlerFunc(func(context.Context, canal.Message) error { return nil }),
	}, worker.Options{MaxBackoff: 200 * time.Millisecond, Logger: logs.Logger()})

	began := time.Now()
	time.Sleep(time.Second)
	// Waits of 50, 100, then 200 ms: at most 3 + elapsed/200ms attempts (7 in a
	// second), however late this goroutine wakes up; a spin would make thousands.
	n, limit := l.calls.Load(), 3+int64(time.Since(began)/(200*time.Millisecond))+1
	if n < 3 || n > limit {
		t.Fatalf("%d receive attempts in %v with backoff 50 ms..200 ms (at most %d)", n, time.Since(began), limit)
	}
	if st := w.Stats(); st.ReceiveErrors != uint64(l.calls.Load()) {
		t.Fatalf("stats %+v after %d failures", st, l.calls.Load())
	}
	if lines := logs.Lines("receive failed"); len(lines) == 0 || len(lines) > 2 {
		t.Fatalf("log lines: %q", lines)
	}
	l.down.Store(false)
	send(t, mem, "jobs", canal.Message{"type": "job"})
	eventually(t, "handled after recovery", func() bool { return w.Stats().Handled == 1 })
	if len(logs.Lines("receiving again")) != 1 {
		t.Fatalf("no recovery line:\n%s", logs)
	}
}

// With several channels each keeps one slot waiting, so a busy channel cannot
// starve an idle one.
func TestBusyChannelLeavesIdleChannelASlot(t *testing.T) {
	t.Parallel()
	l := memoryLayer(t, layers.MemoryOptions{})
	release := make(chan struct{})
	var light atomic.Int64
	w := start(t, l, worker.Channels{
		"heavy": worker.HandlerFunc(func(ctx context.Context, _ canal.Message) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}),
		"light": worker.HandlerFunc(func(context.Context, canal.Message) error {
			light.Add(1)
			return nil
		}),
	}, worker.Options{Concurrency: 3})

	for range 5 {
		send(t, l, "heavy", canal.Message{"type": "job"})
	}
	eventually(t, "2 heavy in flight", func() bool { return w.Stats().InFlight == 2 })
	time.Sleep(50 * time.Millisecond)
	if st := w.Stats(); st.InFlight != 2 || st.Received != 2 {
		t.Fatalf("stats %+v: heavy took the idle channel's slot", st)
	}
	for range 3 {
		send(t, l, "light", canal.Message{"type": "ping"})
	}
	eventually(t, "light handled while heavy is busy", func() bool { return light.Load() == 3 })
	close(release)
	eventually(t, "all handled", func() bool { return w.Stats().Handled == 8 })
}
