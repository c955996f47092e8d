package worker_test

// Two worker processes on one Redis channel, one of them a real child process
// (this test binary, re-executed) that is killed with SIGKILL in the middle of its
// handlers.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/worker"
)

// The child's environment: its role, the Redis URL and its Concurrency.
const (
	childEnv            = "CANAL_WORKER_TEST_CHILD"
	childRedisEnv       = "CANAL_WORKER_TEST_REDIS"
	childConcurrencyEnv = "CANAL_WORKER_TEST_CONCURRENCY"
	childLifetime       = 2 * time.Minute // the child exits by itself if never killed
)

// runChild is a worker process on "thumbnails": it prints "done <id>" for each
// message it handles, and "held <id>" for messages with "hold": true, whose handler
// then never returns. It runs until killed (or childLifetime).
func runChild() int {
	ctx, cancel := context.WithTimeout(context.Background(), childLifetime)
	defer cancel()
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{os.Getenv(childRedisEnv)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n, _ := strconv.Atoi(os.Getenv(childConcurrencyEnv))
	var out sync.Mutex
	say := func(what string, id any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf("%s %v\n", what, id)
	}
	w, err := worker.New(layer, worker.Channels{
		"thumbnails": worker.Types{"thumbnail.make": func(ctx context.Context, m canal.Message) error {
			if m["hold"] == true {
				say("held", m["id"])
				<-ctx.Done()
				return nil
			}
			say("done", m["id"])
			return nil
		}},
	}, worker.Options{Concurrency: n})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	say("ready", os.Getpid())
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return 0
}

// child is a running worker process.
type child struct {
	cmd      *exec.Cmd
	lines    chan string   // closed at the end of its output
	readDone chan struct{} // closed when its output is all read
}

func startChild(t *testing.T, redisURL string, concurrency int) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childRedisEnv+"="+redisURL,
		childConcurrencyEnv+"="+strconv.Itoa(concurrency))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 1024), readDone: make(chan struct{})}
	go func() {
		defer close(c.readDone)
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(c.kill)
	if l := c.next(t); !strings.HasPrefix(l, "ready ") {
		t.Fatalf("child said %q", l)
	}
	return c
}

// kill sends SIGKILL, reads the output to its end (Wait would close the pipe under
// lines not read yet), and reaps the process.
func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		<-c.readDone
		c.cmd.Wait()
	}
}

func (c *child) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatal("child exited")
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatal("child said nothing")
		return ""
	}
}

// recorder is a handler that notes the ids it handled.
type recorder struct {
	mu  sync.Mutex
	ids []int64
}

func (r *recorder) Handle(_ context.Context, m canal.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, m["id"].(int64))
	return nil
}

func (r *recorder) got() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

func redisLayer(t testing.TB, url string, opts layers.RedisOptions) *layers.Redis {
	t.Helper()
	opts.Hosts = []string{url}
	if opts.Logger == nil {
		opts.Logger = (&canaltest.LogBuffer{}).Logger()
	}
	l, err := layers.NewRedis(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func TestRedisTwoProcessesAndKill9(t *testing.T) {
	t.Parallel()
	srv := canaltest.StartRedis(t)
	sender := redisLayer(t, srv.URL(), layers.RedisOptions{Capacity: 1000})
	kid := startChild(t, srv.URL(), 2)

	// Two live workers, one per process: every message handled exactly once.
	mine := &recorder{}
	w := start(t, redisLayer(t, srv.URL(), layers.RedisOptions{}),
		worker.Channels{"thumbnails": worker.Types{"thumbnail.make": mine.Handle}}, worker.Options{Concurrency: 2})
	// Both processes waiting in BZPOPMIN before the first send, so that neither can
	// take everything by starting first.
	c := srv.Client(t)
	ctx := context.Background()
	eventually(t, "two receivers blocked in Redis", func() bool {
		list, err := c.Do(ctx, c.B().ClientList().Build()).ToString()
		return err == nil && strings.Count(list, "cmd=bzpopmin") == 2
	})
	const n = 200
	for i := range n {
		send(t, sender, "thumbnails", canal.Message{"type": "thumbnail.make", "id": i})
	}
	seen := map[int64]int{}
	var theirs int
	deadline := time.After(waitTimeout)
	for len(mine.got())+theirs < n {
		select {
		case l := <-kid.lines:
			id, err := strconv.ParseInt(strings.TrimPrefix(l, "done "), 10, 64)
			if err != nil {
				t.Fatalf("child said %q", l)
			}
			seen[id]++
			theirs++
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("handled %d + %d of %d", len(mine.got()), theirs, n)
		}
	}
	for _, id := range mine.got() {
		seen[id]++
	}
	for i := range int64(n) {
		if seen[i] != 1 {
			t.Fatalf("message %d handled %d times", i, seen[i])
		}
	}
	if theirs == 0 || len(mine.got()) == 0 {
		t.Fatalf("one process took everything: child %d, parent %d", theirs, len(mine.got()))
	}
	t.Logf("200 messages: child handled %d, parent %d", theirs, len(mine.got()))

	// The parent's worker stops; the child (Concurrency 2) takes two messages whose
	// handlers never return, and is killed with SIGKILL in the middle of them.
	w.stop()
	if err := w.wait(t); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		send(t, sender, "thumbnails", canal.Message{"type": "thumbnail.make", "id": 1000 + i, "hold": true})
	}
	held := map[string]bool{kid.next(t): true, kid.next(t): true}
	time.Sleep(100 * time.Millisecond) // a third "held", if the cap leaked, would be read below
	kid.kill()
	for l := range kid.lines {
		held[l] = true
	}
	if len(held) != 2 {
		t.Fatalf("the child held %v, want 2 messages", held)
	}

	// What the child held is gone: not in the queue, no backup in $inflight for
	// anyone to restore. The three it had not taken are intact.
	if n, err := c.Do(ctx, c.B().Zcard().Key("asgithumbnails").Build()).AsInt64(); err != nil || n != 3 {
		t.Fatalf("queue holds %d (%v), want 3", n, err)
	}
	if n, err := c.Do(ctx, c.B().Exists().Key("asgithumbnails$inflight").Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("$inflight exists: %d, %v", n, err)
	}
	after := &recorder{}
	w2 := start(t, redisLayer(t, srv.URL(), layers.RedisOptions{}),
		worker.Channels{"thumbnails": worker.Types{"thumbnail.make": after.Handle}}, worker.Options{})
	eventually(t, "the 3 left handled", func() bool { return len(after.got()) == 3 })
	for _, id := range after.got() {
		if held[fmt.Sprintf("held %d", id)] {
			t.Fatalf("message %d the dead child held came back", id)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if st := w2.Stats(); st.Received != 3 {
		t.Fatalf("stats %+v", st)
	}
}
