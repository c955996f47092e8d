package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"go.uber.org/goleak"
)

// counting is a verifier that answers by the credential's prefix and counts its calls:
// "user-N" is user N, "nobody-..." ErrInvalid, "down-..." ErrUnavailable.
type counting struct{ calls atomic.Int64 }

func (c *counting) verify(_ context.Context, cred string) (canal.User, error) {
	c.calls.Add(1)
	switch {
	case strings.HasPrefix(cred, "user-"):
		return canal.User{ID: strings.TrimPrefix(cred, "user-"), Username: cred, Attrs: map[string]any{"n": 1}}, nil
	case strings.HasPrefix(cred, "down-"):
		return canal.User{}, fmt.Errorf("store: %w", canal.ErrUnavailable)
	}
	return canal.User{}, fmt.Errorf("store: %w", ErrInvalid)
}

func TestCacheOptionsInvalid(t *testing.T) {
	v := (&counting{}).verify
	for _, tt := range []struct {
		v    Verifier
		opts CacheOptions
	}{
		{nil, CacheOptions{TTL: time.Second}},
		{v, CacheOptions{}},
		{v, CacheOptions{TTL: -time.Second}},
		{v, CacheOptions{TTL: MaxCacheTTL + time.Second}},
		{v, CacheOptions{TTL: time.Second, InvalidTTL: 2 * time.Second}},
		{v, CacheOptions{TTL: time.Second, InvalidTTL: -time.Second}},
		{v, CacheOptions{TTL: time.Second, MaxEntries: -1}},
	} {
		if _, err := Cache(tt.v, tt.opts); err == nil || !strings.HasPrefix(err.Error(), "auth: Cache: ") {
			t.Fatalf("Cache(%+v) = %v, want an auth: Cache: error", tt.opts, err)
		}
	}
}

// check calls v and compares the outcome; want is a username, "invalid" or "unavailable".
func check(t *testing.T, v Verifier, cred, want string) {
	t.Helper()
	u, err := v(context.Background(), cred)
	switch want {
	case "invalid":
		if !errors.Is(err, ErrInvalid) || u.Authenticated() {
			t.Fatalf("%s: %+v, %v; want ErrInvalid", cred, u, err)
		}
	case "unavailable":
		if !errors.Is(err, canal.ErrUnavailable) || u.Authenticated() {
			t.Fatalf("%s: %+v, %v; want ErrUnavailable", cred, u, err)
		}
	default:
		if err != nil || u.Username != want {
			t.Fatalf("%s: %+v, %v; want %s", cred, u, err, want)
		}
	}
}

func TestCacheOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		invalidTTL time.Duration
		cred, want string
		calls      int64 // after three lookups
	}{
		{"user cached", 0, "user-1", "user-1", 1},
		{"invalid not cached by default", 0, "nobody-1", "invalid", 3},
		{"invalid cached with InvalidTTL", time.Minute, "nobody-1", "invalid", 1},
		{"unavailable never cached", time.Minute, "down-1", "unavailable", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := &counting{}
			v, err := Cache(src.verify, CacheOptions{TTL: time.Minute, InvalidTTL: tt.invalidTTL})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				check(t, v, tt.cred, tt.want)
			}
			if got := src.calls.Load(); got != tt.calls {
				t.Fatalf("the verifier was called %d times, want %d", got, tt.calls)
			}
		})
	}
}

func TestCacheAttrsAreCopies(t *testing.T) {
	t.Parallel()
	src := &counting{}
	v, err := Cache(src.verify, CacheOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := v(context.Background(), "user-1")
	u.Attrs["n"] = 2
	u.Attrs["added"] = true
	u, _ = v(context.Background(), "user-1")
	if u.Attrs["n"] != 1 || u.Attrs["added"] != nil {
		t.Fatalf("a caller's change to Attrs showed in the next answer: %+v", u.Attrs)
	}
}

func TestCacheExpiry(t *testing.T) {
	t.Parallel()
	src := &counting{}
	const ttl = 30 * time.Millisecond
	v, err := Cache(src.verify, CacheOptions{TTL: ttl, InvalidTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	check(t, v, "user-1", "user-1")
	check(t, v, "nobody-1", "invalid")
	time.Sleep(3 * ttl) // a loaded machine only makes more time pass
	check(t, v, "user-1", "user-1")
	check(t, v, "nobody-1", "invalid")
	if got := src.calls.Load(); got != 4 {
		t.Fatalf("the verifier was called %d times, want 4 (each answer asked again after its TTL)", got)
	}
}

// TestCacheBound: MaxEntries is a hard bound, and the least recently used entry goes
// first.
func TestCacheBound(t *testing.T) {
	t.Parallel()
	src := &counting{}
	cv, err := Cache(src.verify, CacheOptions{TTL: time.Minute, MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, cred := range []string{"user-1", "user-2", "user-3", "user-1", "user-4"} {
		check(t, cv, cred, cred) // user-1 is used again, so user-2 is the oldest when user-4 comes
	}
	before := src.calls.Load()
	for _, cred := range []string{"user-1", "user-3", "user-4"} {
		check(t, cv, cred, cred)
	}
	if got := src.calls.Load(); got != before {
		t.Fatalf("user-1, user-3 and user-4 were asked again (%d calls)", got-before)
	}
	check(t, cv, "user-2", "user-2")
	if got := src.calls.Load(); got != before+1 {
		t.Fatalf("user-2 was not evicted")
	}

	// Many distinct credentials: the cache never holds more than MaxEntries.
	v, c := cacheOf(t, src.verify, CacheOptions{TTL: time.Minute, MaxEntries: 100})
	for i := range 1000 {
		check(t, v, fmt.Sprintf("user-%d", i), fmt.Sprintf("user-%d", i))
	}
	c.mu.Lock()
	n, m := c.lru.Len(), len(c.entries)
	keys := fmt.Sprint(c.entries)
	c.mu.Unlock()
	if n != 100 || m != 100 {
		t.Fatalf("the cache holds %d entries (%d in its map), want 100", n, m)
	}
	if strings.Contains(keys, "user-999") {
		t.Fatal("the cache's keys hold a credential")
	}
}

// cacheOf returns the verifier and the cache behind it.
func cacheOf(t *testing.T, v Verifier, opts CacheOptions) (Verifier, *cache) {
	t.Helper()
	c, err := newCache(v, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c.get, c
}

// blocking is a verifier that holds every call until released, and reports each start.
type blocking struct {
	started chan context.Context
	release chan struct{}
	calls   atomic.Int64
	err     error
}

func newBlocking(err error) *blocking {
	return &blocking{started: make(chan context.Context, 100), release: make(chan struct{}), err: err}
}

func (b *blocking) verify(ctx context.Context, cred string) (canal.User, error) {
	b.calls.Add(1)
	b.started <- ctx
	select {
	case <-b.release:
	case <-ctx.Done():
		return canal.User{}, fmt.Errorf("blocked: %w: %w", canal.ErrUnavailable, ctx.Err())
	}
	if b.err != nil {
		return canal.User{}, b.err
	}
	return canal.User{ID: "1", Username: cred}, nil
}

// waiters is how many callers wait for the lookup of cred.
func waiters(c *cache, cred string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.calls[sha256.Sum256([]byte(cred))]; cl != nil {
		return cl.waiters
	}
	return 0
}

// waitFor polls cond, bounded.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCacheCoalesces: concurrent lookups of one credential make one call of the
// verifier, also for outcomes that are not cached.
func TestCacheCoalesces(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, outcome := range []error{nil, fmt.Errorf("x: %w", canal.ErrUnavailable)} {
		src := newBlocking(outcome)
		v, c := cacheOf(t, src.verify, CacheOptions{TTL: time.Minute})
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				u, err := v(context.Background(), "user-7")
				switch {
				case outcome == nil && (err != nil || u.Username != "user-7"):
					errs <- fmt.Errorf("%+v, %v", u, err)
				case outcome != nil && !errors.Is(err, canal.ErrUnavailable):
					errs <- fmt.Errorf("%+v, %v; want unavailable", u, err)
				}
			})
		}
		waitFor(t, "every caller to wait for the lookup", func() bool { return waiters(c, "user-7") == n })
		close(src.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := src.calls.Load(); got != 1 {
			t.Fatalf("outcome %v: %d calls of the verifier for %d concurrent lookups, want 1", outcome, got, n)
		}
	}
}

// TestCacheCallersLeave: a caller that gives up does not end the lookup others wait
// for; when the last one gives up the lookup's context ends, and a later caller starts
// a fresh lookup.
func TestCacheCallersLeave(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	src := newBlocking(nil)
	v, c := cacheOf(t, src.verify, CacheOptions{TTL: time.Minute})

	first, cancelFirst := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { _, err := v(first, "user-1"); firstDone <- err }()
	lookupCtx := <-src.started
	second := make(chan canal.User, 1)
	go func() { u, _ := v(context.Background(), "user-1"); second <- u }()
	waitFor(t, "two waiters", func() bool { return waiters(c, "user-1") == 2 })

	cancelFirst()
	if err := <-firstDone; !errors.Is(err, canal.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left got %v, want ErrUnavailable and its context's error", err)
	}
	if lookupCtx.Err() != nil {
		t.Fatal("the lookup was cancelled while a caller still waited")
	}
	close(src.release)
	if u := <-second; u.Username != "user-1" {
		t.Fatalf("the remaining caller got %+v", u)
	}

	// Every caller leaves: the lookup's context ends and nothing is cached.
	src2 := newBlocking(nil)
	v2, c2 := cacheOf(t, src2.verify, CacheOptions{TTL: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := v2(ctx, "user-2"); done <- err }()
	lookupCtx = <-src2.started
	cancel()
	<-done
	select {
	case <-lookupCtx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lookup's context did not end when its last caller left")
	}
	waitFor(t, "the lookup to end", func() bool {
		c2.mu.Lock()
		defer c2.mu.Unlock()
		return len(c2.calls) == 0
	})
	close(src2.release)
	check(t, v2, "user-2", "user-2") // a fresh lookup, released
	if got := src2.calls.Load(); got != 2 {
		t.Fatalf("%d calls, want 2 (the abandoned lookup's answer is not kept)", got)
	}
}

// TestCacheRace hammers a small cache from many goroutines with a mix of outcomes and
// expiries (run with -race); every answer must be the verifier's for that credential.
func TestCacheRace(t *testing.T) {
	t.Parallel()
	src := &counting{}
	v, err := Cache(src.verify, CacheOptions{TTL: 2 * time.Millisecond, InvalidTTL: time.Millisecond, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	creds := []string{"user-1", "user-2", "user-3", "nobody-1", "down-1", "user-4", "user-5", "user-6", "user-7", "user-8", "user-9", "nobody-2"}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				cred := creds[(g*7+i)%len(creds)]
				u, err := v(context.Background(), cred)
				switch {
				case strings.HasPrefix(cred, "user-"):
					if err != nil || u.Username != cred {
						t.Errorf("%s: %+v, %v", cred, u, err)
						return
					}
					u.Attrs["n"] = g // each caller owns its copy
				case strings.HasPrefix(cred, "down-"):
					if !errors.Is(err, canal.ErrUnavailable) {
						t.Errorf("%s: %v", cred, err)
						return
					}
				default:
					if !errors.Is(err, ErrInvalid) {
						t.Errorf("%s: %v", cred, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
