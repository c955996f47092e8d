package ticket_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/ticket"
	"github.com/redis/rueidis"
)

func newRedisStore(t testing.TB, c rueidis.Client, opts ticket.RedisOptions) *ticket.Redis {
	t.Helper()
	s, err := ticket.NewRedis(c, opts)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	return s
}

// key computes a ticket's Redis key independently of the package, as Django does.
func key(prefix, tk string) string {
	sum := sha256.Sum256([]byte(tk))
	return prefix + hex.EncodeToString(sum[:])
}

// commandCalls returns how many times the server ran each command, from INFO commandstats.
func commandCalls(t *testing.T, c rueidis.Client) map[string]int {
	t.Helper()
	info, err := c.Do(t.Context(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	calls := map[string]int{}
	for l := range strings.Lines(info) {
		// cmdstat_getdel:calls=3,usec=...
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(n)
	}
	return calls
}

func TestNewRedisErrors(t *testing.T) {
	t.Parallel()
	if _, err := ticket.NewRedis(nil, ticket.RedisOptions{}); err == nil {
		t.Fatal("NewRedis(nil) succeeded")
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	c := r.Client(t)
	testStore(t, func(*testing.T) ticket.Store { return newRedisStore(t, c, ticket.RedisOptions{}) })
}

// TestRedisScript runs the behaviour on the Lua path, forced by DisableGETDEL.
func TestRedisScript(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	c := r.Client(t)
	t.Run("Store", func(t *testing.T) {
		testStore(t, func(t *testing.T) ticket.Store {
			s := newRedisStore(t, c, ticket.RedisOptions{DisableGETDEL: true})
			if !ticket.UsesScript(s) {
				t.Fatal("DisableGETDEL store does not use the script")
			}
			return s
		})
	})
	calls := commandCalls(t, c)
	if calls["getdel"] != 0 || calls["evalsha"]+calls["eval"] == 0 {
		t.Fatalf("commandstats %v: want no getdel and some evalsha", calls)
	}
}

// TestRedisFallback runs against a server without GETDEL, as Redis < 6.2 is: the store
// must notice the "unknown command" reply and switch to the script for good.
func TestRedisFallback(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t, canaltest.WithArgs("--rename-command", "GETDEL", ""))
	c := r.Client(t)
	t.Run("Store", func(t *testing.T) {
		testStore(t, func(*testing.T) ticket.Store { return newRedisStore(t, c, ticket.RedisOptions{}) })
	})

	s := newRedisStore(t, c, ticket.RedisOptions{})
	if ticket.UsesScript(s) {
		t.Fatal("a new store starts on the script")
	}
	for i := range 3 {
		tk := issue(t, s, time.Minute)
		if u, err := s.Consume(t.Context(), tk); err != nil || u.ID != "1" {
			t.Fatalf("Consume %d: %+v, %v", i, u, err)
		}
		if !ticket.UsesScript(s) {
			t.Fatal("the store did not switch to the script after GETDEL was refused")
		}
	}
	// The script also survives a server that lost it (EVALSHA → NOSCRIPT → EVAL).
	if err := c.Do(t.Context(), c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	tk := issue(t, s, time.Minute)
	if _, err := s.Consume(t.Context(), tk); err != nil {
		t.Fatalf("Consume after SCRIPT FLUSH: %v", err)
	}
}

// TestRedisAtRest checks what an attacker reading Redis would find: hashes only.
func TestRedisAtRest(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	c := r.Client(t)
	ctx := t.Context()
	for _, prefix := range []string{"", "myapp:rt:"} {
		s := newRedisStore(t, c, ticket.RedisOptions{Prefix: prefix})
		if prefix == "" {
			prefix = ticket.DefaultPrefix
		}
		tk, err := s.Issue(ctx, canal.User{ID: "42", Username: "alice"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatalf("SCAN: %v", err)
			}
			keys = append(keys, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
		want := key(prefix, tk)
		found := false
		for _, k := range keys {
			if strings.Contains(k, tk) {
				t.Fatalf("key %q contains the ticket", k)
			}
			found = found || k == want
		}
		if !found {
			t.Fatalf("keys %v lack %s", keys, want)
		}
		v, err := c.Do(ctx, c.B().Get().Key(want).Build()).ToString()
		if err != nil || v != `{"id":42,"username":"alice"}` || strings.Contains(v, tk) {
			t.Fatalf("value = %q, %v", v, err)
		}
		pttl, err := c.Do(ctx, c.B().Pttl().Key(want).Build()).AsInt64()
		if err != nil || pttl <= 9000 || pttl > 10000 {
			t.Fatalf("PTTL = %d, %v; want the default 10 s", pttl, err)
		}
		if _, err := s.Consume(ctx, tk); err != nil {
			t.Fatal(err)
		}
		if n, _ := c.Do(ctx, c.B().Exists().Key(want).Build()).AsInt64(); n != 0 {
			t.Fatal("the key outlived Consume")
		}
		if ticket.UsesScript(s) {
			t.Fatal("a server with GETDEL made the store switch to the script")
		}
	}
}

// TestRedisInterop consumes values written the way the Django package writes them:
// SET key json EX seconds, with Python's json.dumps spacing.
func TestRedisInterop(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	c := r.Client(t)
	ctx := t.Context()
	tests := []struct {
		name   string
		prefix string
		value  string
		want   canal.User // zero: ErrInvalid
	}{
		{"int id", "", `{"id": 42, "username": "alice", "is_staff": true, "groups": ["chat"]}`,
			canal.User{ID: "42", Username: "alice", Attrs: map[string]any{"is_staff": true, "groups": []any{"chat"}}}},
		{"2^53+1 id", "", `{"id": 9007199254740993, "username": "big"}`, canal.User{ID: "9007199254740993", Username: "big"}},
		{"uuid id", "", `{"id": "550e8400-e29b-41d4-a716-446655440000", "username": "u"}`,
			canal.User{ID: "550e8400-e29b-41d4-a716-446655440000", Username: "u"}},
		{"non-ascii", "", `{"id": 3, "username": "Jos\u00e9"}`, canal.User{ID: "3", Username: "José"}},
		{"custom prefix", "dj:", `{"id": 5, "username": "p"}`, canal.User{ID: "5", Username: "p"}},
		{"float id", "", `{"id": 42.0, "username": "alice"}`, canal.User{}},
		{"no username", "", `{"id": 42}`, canal.User{}},
		{"not json", "", `alice`, canal.User{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newRedisStore(t, c, ticket.RedisOptions{Prefix: tt.prefix})
			prefix := tt.prefix
			if prefix == "" {
				prefix = "canal:ticket:"
			}
			tk, _ := ticket.New()
			k := key(prefix, tk)
			if err := c.Do(ctx, c.B().Arbitrary("SET").Keys(k).Args(tt.value, "EX", "10").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			u, err := s.Consume(ctx, tk)
			if tt.want.ID == "" {
				if !errors.Is(err, ticket.ErrInvalid) {
					t.Fatalf("Consume = %+v, %v; want ErrInvalid", u, err)
				}
			} else if err != nil || !reflect.DeepEqual(u, tt.want) {
				t.Fatalf("Consume = %#v, %v; want %#v", u, err, tt.want)
			}
			// Consumed either way: a bad value is not left for a second try.
			if n, _ := c.Do(ctx, c.B().Exists().Key(k).Build()).AsInt64(); n != 0 {
				t.Fatal("the key outlived Consume")
			}
		})
	}
}

// TestRedisUnavailable kills Redis under a store: every call must fail closed, fast,
// with canal.ErrUnavailable, and recover once Redis is back.
func TestRedisUnavailable(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	c := r.Client(t, func(o *rueidis.ClientOption) {
		o.Dialer.Timeout = 300 * time.Millisecond
		o.ConnWriteTimeout = 500 * time.Millisecond
	})
	for _, script := range []bool{false, true} {
		s := newRedisStore(t, c, ticket.RedisOptions{DisableGETDEL: script})
		t.Run("script="+strconv.FormatBool(script), func(t *testing.T) {
			before := issue(t, s, time.Minute)
			r.Kill()

			const bound = 2 * time.Second
			calls := map[string]func(ctx context.Context) error{
				"Consume": func(ctx context.Context) error { _, err := s.Consume(ctx, before); return err },
				"Issue": func(ctx context.Context) error {
					_, err := s.Issue(ctx, canal.User{ID: "1", Username: "a"}, time.Minute)
					return err
				},
			}
			for name, call := range calls {
				ctx, cancel := context.WithTimeout(t.Context(), bound)
				start := time.Now()
				err := call(ctx)
				elapsed := time.Since(start)
				cancel()
				if !errors.Is(err, canal.ErrUnavailable) || errors.Is(err, ticket.ErrInvalid) {
					t.Fatalf("%s with Redis down: %v; want canal.ErrUnavailable", name, err)
				}
				if elapsed > bound+500*time.Millisecond {
					t.Fatalf("%s with Redis down took %v", name, elapsed)
				}
				if strings.Contains(err.Error(), before) {
					t.Fatalf("error %q reveals the ticket", err)
				}
			}
			// Malformed tickets are refused without I/O: ErrInvalid even with Redis down.
			for _, m := range malformed {
				if _, err := s.Consume(t.Context(), m); err != ticket.ErrInvalid {
					t.Fatalf("Consume(%.20q) with Redis down: %v; want ErrInvalid, without I/O", m, err)
				}
			}

			r.Restart()
			// The ticket died with the server (no persistence): still fail closed.
			if _, err := s.Consume(t.Context(), before); err != ticket.ErrInvalid {
				t.Fatalf("Consume of a ticket lost with the server: %v; want ErrInvalid", err)
			}
			tk := issue(t, s, time.Minute)
			if _, err := s.Consume(t.Context(), tk); err != nil {
				t.Fatalf("Consume after Restart: %v", err)
			}
		})
	}
}

// TestRedisTimeout makes Redis hang (CLIENT PAUSE): the caller's deadline must bound
// Consume, which reports canal.ErrUnavailable and the deadline.
func TestRedisTimeout(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	c := r.Client(t)
	pauser := r.Client(t)
	s := newRedisStore(t, c, ticket.RedisOptions{})
	tk := issue(t, s, time.Minute)
	if err := pauser.Do(t.Context(), pauser.B().ClientPause().Timeout(1000).All().Build()).Error(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Consume(ctx, tk)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("Consume took %v under a 200 ms deadline", elapsed)
	}
	if !errors.Is(err, canal.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Consume on a hung Redis: %v; want ErrUnavailable and DeadlineExceeded", err)
	}
	// Once the pause ends the store works again. (The timed-out GETDEL may still have
	// run and burnt the ticket: that is failing closed.)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		tk, err := s.Issue(ctx, canal.User{ID: "1", Username: "a"}, time.Minute)
		if err == nil {
			_, err = s.Consume(ctx, tk)
		}
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after the pause: %v", err)
		}
	}
}

func BenchmarkConsumeMemory(b *testing.B) {
	s := ticket.NewMemory(ticket.MemoryOptions{})
	tickets := make([]string, b.N)
	for i := range tickets {
		tickets[i] = issue(b, s, time.Hour)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Consume(ctx, tickets[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConsumeRedis(b *testing.B) {
	for _, script := range []bool{false, true} {
		name := "GETDEL"
		if script {
			name = "Lua"
		}
		b.Run(name, func(b *testing.B) {
			r := canaltest.StartRedis(b)
			c := r.Client(b)
			s := newRedisStore(b, c, ticket.RedisOptions{DisableGETDEL: script})
			tickets := seedRedis(b, c, b.N)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.Consume(ctx, tickets[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConsumeRedisParallel shows throughput with rueidis pipelining concurrent calls.
func BenchmarkConsumeRedisParallel(b *testing.B) {
	r := canaltest.StartRedis(b)
	c := r.Client(b)
	s := newRedisStore(b, c, ticket.RedisOptions{})
	tickets := seedRedis(b, c, b.N)
	ctx := context.Background()
	var mu sync.Mutex
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			tk := tickets[next]
			next++
			mu.Unlock()
			if _, err := s.Consume(ctx, tk); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// seedRedis writes n tickets the way Django does, pipelined, and returns them.
func seedRedis(b *testing.B, c rueidis.Client, n int) []string {
	b.Helper()
	tickets := make([]string, n)
	cmds := make(rueidis.Commands, 0, 1000)
	flush := func() {
		for _, res := range c.DoMulti(context.Background(), cmds...) {
			if err := res.Error(); err != nil {
				b.Fatal(err)
			}
		}
		cmds = cmds[:0]
	}
	for i := range tickets {
		tickets[i], _ = ticket.New()
		cmds = append(cmds, c.B().Set().Key(key(ticket.DefaultPrefix, tickets[i])).
			Value(`{"id": 42, "username": "alice", "is_staff": false}`).ExSeconds(3600).Build())
		if len(cmds) == cap(cmds) {
			flush()
		}
	}
	flush()
	return tickets
}

// TestDialRedis runs the store's behaviour on a store that dialed its own client
// from a URL, as the channel layers do, and checks the keys Django reads.
func TestDialRedis(t *testing.T) {
	t.Parallel()
	r := canaltest.StartRedis(t)
	dial := func(t *testing.T, opts ticket.RedisOptions) *ticket.Redis {
		t.Helper()
		s, err := ticket.DialRedis(t.Context(), r.URL(), opts)
		if err != nil {
			t.Fatalf("DialRedis: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	}
	testStore(t, func(t *testing.T) ticket.Store { return dial(t, ticket.RedisOptions{}) })

	t.Run("Keys", func(t *testing.T) {
		hooked := false
		s := dial(t, ticket.RedisOptions{Prefix: "dial:", ClientOptions: func(o *rueidis.ClientOption) { hooked = true }})
		if !hooked {
			t.Error("ClientOptions was not called")
		}
		tk, err := s.Issue(t.Context(), canal.User{ID: "7", Username: "bob"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c := r.Client(t)
		v, err := c.Do(t.Context(), c.B().Get().Key(key("dial:", tk)).Build()).AsBytes()
		if err != nil {
			t.Fatalf("GET the ticket's key: %v", err)
		}
		if u, err := ticket.Decode(v); err != nil || u.ID != "7" || u.Username != "bob" {
			t.Fatalf("stored value decodes to %+v, %v", u, err)
		}
	})

	t.Run("Close", func(t *testing.T) {
		s, err := ticket.DialRedis(t.Context(), r.URL(), ticket.RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tk, err := s.Issue(t.Context(), canal.User{ID: "1", Username: "a"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		s.Close() // idempotent
		if _, err := s.Consume(t.Context(), tk); !errors.Is(err, canal.ErrUnavailable) {
			t.Fatalf("Consume after Close: %v; want ErrUnavailable", err)
		}
	})

	t.Run("SharedClientStaysOpen", func(t *testing.T) {
		c := r.Client(t)
		s := newRedisStore(t, c, ticket.RedisOptions{})
		s.Close() // the client is the caller's
		if _, err := s.Issue(t.Context(), canal.User{ID: "1", Username: "a"}, time.Minute); err != nil {
			t.Fatalf("Issue after Close of a NewRedis store: %v", err)
		}
	})
}

// TestDialRedisErrors: bad options and URLs are refused with errors that never show
// the password; an unreachable server is ErrUnavailable.
func TestDialRedisErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		url     string
		opts    ticket.RedisOptions
		want    string
		unavail bool
	}{
		{"negative TTL", "redis://127.0.0.1:1", ticket.RedisOptions{DefaultTTL: -time.Second}, "negative DefaultTTL", false},
		{"bad scheme", "http://u:hunter2@127.0.0.1:1", ticket.RedisOptions{}, "bad URL", false},
		{"bad port", "redis://:hunter2@127.0.0.1:notaport", ticket.RedisOptions{}, "bad URL", false},
		{"unreachable", "redis://:hunter2@127.0.0.1:1/0", ticket.RedisOptions{}, "connect", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ticket.DialRedis(t.Context(), tt.url, tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("DialRedis succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "ticket: ") {
				t.Errorf("err = %q; want %q in it", err, tt.want)
			}
			if errors.Is(err, canal.ErrUnavailable) != tt.unavail {
				t.Errorf("err = %v; ErrUnavailable %v", err, tt.unavail)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

// ExampleDialRedis keeps tickets in the Redis Django writes them to, named by URL as
// the channel layer's Hosts are. (Compiled, not run: it needs a Redis server.)
func ExampleDialRedis() {
	ctx := context.Background()
	store, err := ticket.DialRedis(ctx, "redis://127.0.0.1:6379/0", ticket.RedisOptions{})
	if err != nil {
		panic(err) // a bad URL, or Redis unreachable (canal.ErrUnavailable)
	}
	defer store.Close()
	u, err := store.Consume(ctx, "the-ticket-from-the-browser")
	fmt.Println(u.Username, errors.Is(err, ticket.ErrInvalid))
}
