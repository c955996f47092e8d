package canaltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ping(ctx context.Context, c rueidis.Client) error {
	return c.Do(ctx, c.B().Ping().Build()).Error()
}

func TestStartRedis(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(r.Addr()) {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", r.Addr())
	}
	if want := "redis://" + r.Addr() + "/0"; r.URL() != want {
		t.Fatalf("URL() = %q, want %q", r.URL(), want)
	}
	// The URL is usable as is.
	opt, err := rueidis.ParseURL(r.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", r.URL(), err)
	}
	if len(opt.InitAddress) != 1 || opt.InitAddress[0] != r.Addr() {
		t.Fatalf("URL parses to %v, want [%s]", opt.InitAddress, r.Addr())
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c := r.Client(t)
	if err := ping(ctx, c); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v; want v", v, err)
	}
	// No persistence: nothing would survive a restart anyway, and nothing is written.
	cfg, err := c.Do(ctx, c.B().ConfigGet().Parameter("save", "appendonly", "bind").Build()).AsStrMap()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if cfg["save"] != "" || cfg["appendonly"] != "no" || cfg["bind"] != "127.0.0.1" {
		t.Fatalf("config = %v, want save='' appendonly=no bind=127.0.0.1", cfg)
	}
}

func TestStartRedisConcurrently(t *testing.T) {
	t.Parallel()
	const n = 4
	addrs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// StartRedis may call t.Fatal, which must happen on the test goroutine of its
			// own test: give each start its own subtest.
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				addrs[i] = StartRedis(t).Addr()
			})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("two servers on %s: %v", a, addrs)
		}
		seen[a] = true
	}
}

func TestRedisKillRestart(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	c := r.Client(t, func(o *rueidis.ClientOption) {
		o.Dialer.Timeout = 500 * time.Millisecond
		o.ConnWriteTimeout = 500 * time.Millisecond
	})
	ctx := t.Context()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	addr, pid := r.Addr(), r.pid()

	r.Kill()
	r.Kill() // idempotent
	if r.pid() != 0 {
		t.Fatalf("pid after Kill = %d, want 0", r.pid())
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dial %s after Kill succeeded", addr)
	}
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := ping(tctx, c)
	cancel()
	if err == nil {
		t.Fatal("PING after Kill succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("PING after Kill took %v", d)
	}

	r.Restart()
	if r.Addr() != addr {
		t.Fatalf("Addr after Restart = %s, want %s", r.Addr(), addr)
	}
	if p := r.pid(); p == 0 || p == pid {
		t.Fatalf("pid after Restart = %d (was %d)", p, pid)
	}
	// The same client reconnects; the data is gone.
	if err := ping(ctx, c); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if err := c.Do(ctx, c.B().Get().Key("k").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("GET after Restart: err = %v, want nil reply", err)
	}

	// Restart of a running server replaces it too.
	r.Restart()
	if err := ping(ctx, c); err != nil {
		t.Fatalf("PING after second Restart: %v", err)
	}
}

func TestRedisCleanupKillsProcess(t *testing.T) {
	t.Parallel()
	var pid int
	var addr string
	t.Run("inner", func(t *testing.T) {
		r := StartRedis(t)
		pid, addr = r.pid(), r.Addr()
		if pid == 0 {
			t.Fatal("no pid")
		}
	})
	// The subtest's cleanup has run: the process is gone and reaped.
	if p, err := os.FindProcess(pid); err == nil {
		if err := p.Signal(syscall.Signal(0)); err == nil {
			t.Fatalf("process %d still exists after cleanup", pid)
		}
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dial %s after cleanup succeeded", addr)
	}
}

func TestWithArgs(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, WithArgs("--maxmemory", "12345678"), WithArgs("--rename-command", "GETDEL", ""))
	c := r.Client(t)
	ctx := t.Context()
	cfg, err := c.Do(ctx, c.B().ConfigGet().Parameter("maxmemory").Build()).AsStrMap()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	if cfg["maxmemory"] != "12345678" {
		t.Fatalf("maxmemory = %q, want 12345678", cfg["maxmemory"])
	}
	err = c.Do(ctx, c.B().Getdel().Key("k").Build()).Error()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unknown command") {
		t.Fatalf("GETDEL on a server with it renamed away: err = %v, want unknown command", err)
	}
}

func TestStartRedisBadArgs(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	ft.run(func() { StartRedis(ft, WithArgs("--no-such-option", "1")) })
	if !ft.failed || !strings.Contains(ft.msg, "exited before answering") {
		t.Fatalf("fatal = %v, %q; want an exit report", ft.failed, ft.msg)
	}
	if strings.Count(ft.msg, "attempt 1") != 1 {
		t.Fatalf("a configuration error must not be retried: %q", ft.msg)
	}
}

func TestStartRedisMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no t.Parallel with Setenv
	ft := &fakeTB{TB: t}
	ft.run(func() { StartRedis(ft) })
	if !ft.failed {
		t.Fatal("StartRedis without redis-server did not fail the test")
	}
	if ft.skipped {
		t.Fatal("StartRedis without redis-server skipped the test")
	}
	for _, want := range []string{"redis-server not found", "apt-get install redis-server"} {
		if !strings.Contains(ft.msg, want) {
			t.Fatalf("message %q lacks %q", ft.msg, want)
		}
	}
}

// TestStartPortTaken drives one start attempt onto a port someone else holds.
func TestStartPortTaken(t *testing.T) {
	t.Parallel()
	other := StartRedis(t) // a server that answers INFO on its port
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for name, addr := range map[string]string{"listener": l.Addr().String(), "redis": other.Addr()} {
		t.Run(name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(addr)
			r := &Redis{t: t, bin: other.bin, dir: t.TempDir(), addr: addr}
			r.port, _ = strconv.Atoi(port)
			t.Cleanup(r.stop)
			r.mu.Lock()
			err := r.startLocked()
			r.mu.Unlock()
			if !errors.Is(err, errPortTaken) {
				t.Fatalf("start on a taken port: err = %v, want errPortTaken", err)
			}
			if r.pid() != 0 {
				t.Fatal("failed start left a process registered")
			}
		})
	}
	// The other server is unharmed.
	if err := ping(t.Context(), other.Client(t)); err != nil {
		t.Fatalf("PING other: %v", err)
	}
}

// fakeTB captures Fatal and Skip: it ends the goroutine like testing.T does.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	failed  bool
	skipped bool
	msg     string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) { f.fail(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Fatal(args ...any)                 { f.fail(fmt.Sprint(args...)) }
func (f *fakeTB) Skip(args ...any)                  { f.skip() }
func (f *fakeTB) Skipf(string, ...any)              { f.skip() }
func (f *fakeTB) SkipNow()                          { f.skip() }
func (f *fakeTB) FailNow()                          { f.fail("FailNow") }

func (f *fakeTB) fail(msg string) {
	f.mu.Lock()
	f.failed, f.msg = true, msg
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) skip() {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn on a goroutine of its own, as Goexit would otherwise end the test.
func (f *fakeTB) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		f.TB.Fatal("StartRedis did not return")
	}
}
