package ratelog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Defaults of a zero [Limiter].
const (
	DefaultInterval = time.Second
	DefaultMaxKeys  = 1024
	// MaxKeyLen bounds the bytes of a key that count: longer keys are cut, so a
	// hostile key (an event type from Redis) cannot make the map large.
	MaxKeyLen = 128
)

// SuppressedKey is the attribute [Limiter.Log] adds, when lines were held back, with
// how many.
const SuppressedKey = "suppressed"

// epoch is the clock origin: durations since it are monotonic.
var epoch = time.Now()

// Limiter lets at most one line per key through per Interval. The zero value uses
// DefaultInterval and DefaultMaxKeys. Set the fields before first use; do not copy a
// Limiter after first use.
type Limiter struct {
	// Interval is the minimum time between two lines of one key; 0 means 1 s.
	Interval time.Duration
	// MaxKeys bounds the keys tracked one by one; 0 means 1024. Past it, other keys
	// share one bucket (one line per Interval for all of them together).
	MaxKeys int

	mu        sync.Mutex
	keys      map[string]*bucket
	overflow  bucket
	lastSweep time.Duration
	now       func() time.Duration // tests; nil means time since epoch
}

type bucket struct {
	last       time.Duration // when the last line went out; 0 means never
	seen       bool
	suppressed uint64
}

// Allow reports whether a line for key may go out now. When it may, suppressed is
// the number of lines held back for key (or for the shared bucket) since the last
// one that went out, and the count restarts at zero.
func (l *Limiter) Allow(key string) (ok bool, suppressed uint64) {
	if len(key) > MaxKeyLen {
		key = key[:MaxKeyLen]
	}
	interval := l.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	b := l.bucketLocked(key, now, interval)
	if b.seen && now-b.last < interval {
		b.suppressed++
		return false, 0
	}
	b.seen, b.last = true, now
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// Log logs msg with args at level when Allow(key) lets it through, adding the
// suppressed count as SuppressedKey when lines were held back. A nil logger means
// slog.Default(). It reports whether the line went out.
func (l *Limiter) Log(logger *slog.Logger, level slog.Level, key, msg string, args ...any) bool {
	ok, n := l.Allow(key)
	if !ok {
		return false
	}
	if logger == nil {
		logger = slog.Default()
	}
	if n > 0 {
		args = append(args[:len(args):len(args)], SuppressedKey, n)
	}
	logger.Log(context.Background(), level, msg, args...)
	return true
}

func (l *Limiter) clock() time.Duration {
	if l.now != nil {
		return l.now()
	}
	return time.Since(epoch)
}

// bucketLocked returns key's bucket, making it when there is room. When the map is
// full it first sweeps keys that are idle (no line within interval) and hold no
// count, at most once per interval; if that frees nothing, key shares the overflow
// bucket.
func (l *Limiter) bucketLocked(key string, now, interval time.Duration) *bucket {
	if b := l.keys[key]; b != nil {
		return b
	}
	max := l.MaxKeys
	if max <= 0 {
		max = DefaultMaxKeys
	}
	if l.keys == nil {
		l.keys = make(map[string]*bucket)
	}
	if len(l.keys) >= max && now-l.lastSweep >= interval {
		l.lastSweep = now
		for k, b := range l.keys {
			if b.suppressed == 0 && now-b.last >= interval {
				delete(l.keys, k)
			}
		}
	}
	if len(l.keys) >= max {
		return &l.overflow
	}
	b := &bucket{}
	l.keys[strings.Clone(key)] = b // a cut key must not pin the caller's string
	return b
}
