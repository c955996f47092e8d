package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock returns a limiter whose time moves only when the test says so.
func fakeClock(l *Limiter) *time.Duration {
	t := new(time.Duration)
	*t = time.Hour // not zero: the first line must pass at any clock value
	l.now = func() time.Duration { return *t }
	return t
}

func TestAllow(t *testing.T) {
	t.Parallel()
	type step struct {
		advance    time.Duration
		key        string
		ok         bool
		suppressed uint64
	}
	tests := []struct {
		name     string
		interval time.Duration
		steps    []step
	}{
		{"first line passes, repeats are held back and counted", 0, []step{
			{0, "a", true, 0}, {0, "a", false, 0}, {500 * time.Millisecond, "a", false, 0},
			{500 * time.Millisecond, "a", true, 2}, {0, "a", false, 0},
		}},
		{"keys are independent", 0, []step{
			{0, "a", true, 0}, {0, "b", true, 0}, {0, "a", false, 0}, {0, "b", false, 0},
			{time.Second, "b", true, 1}, {0, "a", true, 1},
		}},
		{"count restarts after it is reported", 0, []step{
			{0, "a", true, 0}, {0, "a", false, 0}, {time.Second, "a", true, 1},
			{time.Second, "a", true, 0},
		}},
		{"custom interval", 10 * time.Second, []step{
			{0, "a", true, 0}, {time.Second, "a", false, 0}, {9 * time.Second, "a", true, 1},
		}},
		{"long keys are cut to MaxKeyLen", 0, []step{
			{0, strings.Repeat("k", MaxKeyLen) + "1", true, 0},
			{0, strings.Repeat("k", MaxKeyLen) + "2", false, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &Limiter{Interval: tt.interval}
			now := fakeClock(l)
			for i, s := range tt.steps {
				*now += s.advance
				ok, n := l.Allow(s.key)
				if ok != s.ok || n != s.suppressed {
					t.Fatalf("step %d (%s): Allow = %v, %d; want %v, %d", i, s.key[:min(len(s.key), 8)], ok, n, s.ok, s.suppressed)
				}
			}
		})
	}
}

func TestZeroValueUsesRealClock(t *testing.T) {
	t.Parallel()
	var l Limiter
	if ok, _ := l.Allow("k"); !ok {
		t.Fatal("first line held back")
	}
	if ok, _ := l.Allow("k"); ok {
		t.Fatal("second line within the interval let through")
	}
	l2 := Limiter{Interval: 20 * time.Millisecond}
	l2.Allow("k")
	l2.Allow("k")
	time.Sleep(30 * time.Millisecond)
	if ok, n := l2.Allow("k"); !ok || n != 1 {
		t.Fatalf("after the interval: %v, %d; want true, 1", ok, n)
	}
}

func TestKeyCap(t *testing.T) {
	t.Parallel()
	l := &Limiter{MaxKeys: 3}
	now := fakeClock(l)
	for i := range 3 {
		if ok, _ := l.Allow(fmt.Sprint("k", i)); !ok {
			t.Fatalf("key %d held back", i)
		}
	}
	// The map is full and every key is within its interval: new keys share one bucket.
	if ok, _ := l.Allow("x"); !ok {
		t.Fatal("first overflow line held back")
	}
	if ok, _ := l.Allow("y"); ok {
		t.Fatal("second overflow key let through: the overflow bucket is shared")
	}
	if len(l.keys) != 3 {
		t.Fatalf("%d keys tracked; want the cap, 3", len(l.keys))
	}
	// Once the tracked keys are idle, a sweep frees them for new keys.
	*now += time.Second
	if ok, _ := l.Allow("z"); !ok {
		t.Fatal("new key held back after the sweep")
	}
	if _, tracked := l.keys["z"]; !tracked {
		t.Fatal("z not tracked after the sweep freed room")
	}
	// A key with a pending count is not swept: its count would be lost.
	l2 := &Limiter{MaxKeys: 1}
	now2 := fakeClock(l2)
	l2.Allow("a")
	l2.Allow("a")
	*now2 += time.Second
	l2.Allow("b") // sweep finds a holding a count: b overflows
	if ok, n := l2.Allow("a"); !ok || n != 1 {
		t.Fatalf("a after the sweep: %v, %d; want true, 1", ok, n)
	}
}

func TestLog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	l := &Limiter{}
	now := fakeClock(l)
	args := []any{"type", "chat.message"}
	for range 5 {
		l.Log(logger, slog.LevelWarn, "k", "no handler", args...)
	}
	*now += time.Second
	if !l.Log(logger, slog.LevelWarn, "k", "no handler", args...) {
		t.Fatal("line after the interval held back")
	}
	l.Log(logger, slog.LevelDebug, "other", "below the handler's level")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines; want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(lines[0], SuppressedKey) || !strings.Contains(lines[0], "type=chat.message") {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.Contains(lines[1], SuppressedKey+"=4") {
		t.Errorf("second line %q does not report the 4 held back", lines[1])
	}
	if len(args) != 2 {
		t.Errorf("Log changed the caller's args: %v", args)
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	l := &Limiter{MaxKeys: 8}
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				if ok, _ := l.Allow(fmt.Sprint("k", (g*1000+i)%16)); ok {
					mu.Lock()
					passed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	// 8 tracked keys and one shared bucket, each at most once (or twice across a
	// one-second boundary) during the test.
	if passed < 9 || passed > 18 {
		t.Fatalf("%d lines passed for 16 keys over a cap of 8", passed)
	}
}
