package layers_test

// Canal servers sharing one Redis: each test runs two Canal servers in this process
// (canaltest.NewServer, each with a channel layer of its own, as two deployments of
// one application would have) on a private redis-server, with real WebSocket clients
// on loopback. They run for both Redis backends, core (NewRedis) and Pub/Sub
// (NewRedisPubSub).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/server"
)

// redisBackend is a Redis channel layer under test.
type redisBackend struct {
	name string
	// open makes a layer on url; an empty prefix is channels_redis' default.
	open func(ctx context.Context, url, prefix string, log *slog.Logger) (canal.Layer, func() layers.RedisStats, error)
}

var redisBackends = []redisBackend{
	{
		name: "core",
		open: func(ctx context.Context, url, prefix string, log *slog.Logger) (canal.Layer, func() layers.RedisStats, error) {
			l, err := layers.NewRedis(ctx, layers.RedisOptions{Hosts: []string{url}, Prefix: prefix, Logger: log})
			if err != nil {
				return nil, nil, err
			}
			return l, l.Stats, nil
		},
	},
	{
		name: "pubsub",
		open: func(ctx context.Context, url, prefix string, log *slog.Logger) (canal.Layer, func() layers.RedisStats, error) {
			l, err := layers.NewRedisPubSub(ctx, layers.RedisPubSubOptions{Hosts: []string{url}, Prefix: prefix, Logger: log})
			if err != nil {
				return nil, nil, err
			}
			return l, l.Stats, nil
		},
	},
}

// The consumer's protocol, in text frames. Client to server: "echo:<x>" comes back
// as is (no layer involved), "say:<x>" goes to the group. Server to client: "s:<x>"
// for a group's say.message, "g:<seq>" for a load.message.
const (
	sharedGroup = "shared"
	echoPrefix  = "echo:"
	sayPrefix   = "say:"
)

// groupServer is one Canal server: its layer, and the channels of its open sockets.
type groupServer struct {
	*canaltest.Server
	name  string
	layer canal.Layer
	stats func() layers.RedisStats

	mu      sync.Mutex
	members map[string]struct{}
}

// groupConsumer is in sharedGroup (Options.Groups) for its connection's life.
type groupConsumer struct {
	s       *groupServer
	channel string
}

func (g *groupConsumer) Connect(ctx context.Context, c *consumer.Conn) error {
	g.channel = c.ChannelName()
	g.s.mu.Lock()
	g.s.members[g.channel] = struct{}{}
	g.s.mu.Unlock()
	return c.Accept()
}

func (g *groupConsumer) Receive(ctx context.Context, c *consumer.Conn, f canal.Frame) error {
	text := string(f.Data)
	switch {
	case strings.HasPrefix(text, echoPrefix):
		return c.SendText(text)
	case strings.HasPrefix(text, sayPrefix):
		return c.GroupSend(ctx, sharedGroup, canal.Message{"type": "say.message", "text": text[len(sayPrefix):]})
	}
	return nil
}

func (g *groupConsumer) Disconnect(ctx context.Context, c *consumer.Conn, code int) {
	g.s.mu.Lock()
	delete(g.s.members, g.channel)
	g.s.mu.Unlock()
}

// multiLogger sends warnings of the servers and layers to the test log.
func multiLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startGroupServer starts a Canal server with its own layer of backend b on redisURL.
// The test's cleanup shuts the server down, then closes the layer.
func startGroupServer(t *testing.T, name string, b redisBackend, redisURL string) *groupServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	log := multiLogger(t)
	layer, stats, err := b.open(ctx, redisURL, "", log)
	if err != nil {
		t.Fatalf("server %s: layer: %v", name, err)
	}
	// Registered before NewServer's, so it runs after it: sockets first, then the layer.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := layer.Close(ctx); err != nil {
			t.Errorf("server %s: close layer: %v", name, err)
		}
	})
	s := &groupServer{name: name, layer: layer, stats: stats, members: make(map[string]struct{})}
	h, err := consumer.New(func() *groupConsumer { return &groupConsumer{s: s} }, consumer.Options[*groupConsumer]{
		Layer:  layer,
		Groups: []string{sharedGroup},
		Frames: map[string]consumer.FrameFunc{
			"say.message": func(m canal.Message) (canal.Frame, error) {
				return canal.Text("s:" + m.String("text")), nil
			},
			"load.message": func(m canal.Message) (canal.Frame, error) {
				return canal.Text("g:" + m.String("seq")), nil
			},
		},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Server = canaltest.NewServer(t, h, server.Options{Logger: log})
	return s
}

// dialGroup opens a socket on s. The test's cleanup drops it.
func dialGroup(ctx context.Context, t *testing.T, s *groupServer) *canaltest.Communicator {
	t.Helper()
	c, err := canaltest.Dial(ctx, s.URL("/ws/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatalf("dial server %s: %v", s.name, err)
	}
	t.Cleanup(c.Abort)
	return c
}

// wantText reads the next frame of c and checks it.
func wantText(ctx context.Context, t *testing.T, who string, c *canaltest.Communicator, want string) {
	t.Helper()
	got, err := c.ReceiveText(ctx)
	if err != nil || got != want {
		t.Fatalf("%s: got %q, %v; want %q", who, got, err, want)
	}
}

// A client on one server receives a group message sent by a client on the other,
// and the other way round: two processes share the group through Redis.
func TestTwoServersShareGroups(t *testing.T) {
	t.Parallel()
	for _, b := range redisBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			redis := canaltest.StartRedis(t)
			a := startGroupServer(t, "A", b, redis.URL())
			bs := startGroupServer(t, "B", b, redis.URL())
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			alice, bob, carol := dialGroup(ctx, t, a), dialGroup(ctx, t, bs), dialGroup(ctx, t, bs)

			if err := alice.SendText(sayPrefix + "from A"); err != nil {
				t.Fatal(err)
			}
			for who, c := range map[string]*canaltest.Communicator{"alice (A)": alice, "bob (B)": bob, "carol (B)": carol} {
				wantText(ctx, t, who, c, "s:from A")
			}
			if err := bob.SendText(sayPrefix + "from B"); err != nil {
				t.Fatal(err)
			}
			for who, c := range map[string]*canaltest.Communicator{"alice (A)": alice, "bob (B)": bob, "carol (B)": carol} {
				wantText(ctx, t, who, c, "s:from B")
			}
			// One group_send reached each server's process once, whatever its members.
			if st := a.stats(); st.Dropped != 0 || st.Malformed != 0 {
				t.Errorf("server A stats %+v", st)
			}
			if st := bs.stats(); st.Dropped != 0 || st.Malformed != 0 {
				t.Errorf("server B stats %+v", st)
			}
		})
	}
}

// Parameters of TestRedisRestartUnderLoad.
const (
	loadClients   = 200                   // sockets, half on each server
	loadInterval  = 20 * time.Millisecond // one group_send per interval: 50/s
	loadOutage    = time.Second           // Redis killed for this long
	loadRecovery  = 5 * time.Second       // group messages reach everyone again within this of the restart
	loadSettle    = 20 * time.Second      // bound on goroutines and heap going back down
	loadGoroutine = 12                    // margin on the goroutine count
	loadHeapSlack = 8 << 20               // margin on HeapInuse: 8 MiB, or
	loadHeapRatio = 0.20                  // 20% of the baseline, whichever is larger
)

// loadClient is one socket and what it has received.
type loadClient struct {
	c    *canaltest.Communicator
	last atomic.Int64 // highest load.message seq received
	got  atomic.Int64 // load.messages received
	echo chan string
	done chan struct{} // closed when the reader stops: the socket closed or the test ended
	err  error         // why it stopped; read after done
}

func (lc *loadClient) read(ctx context.Context) {
	defer close(lc.done)
	for {
		f, err := lc.c.Receive(ctx) // ctx has a deadline: no per-call default
		if err != nil {
			lc.err = err
			return
		}
		text := string(f.Data)
		switch {
		case strings.HasPrefix(text, "g:"):
			n, err := strconv.ParseInt(text[2:], 10, 64)
			if err != nil {
				lc.err = fmt.Errorf("bad frame %q", text)
				return
			}
			lc.got.Add(1)
			for {
				old := lc.last.Load()
				if n <= old || lc.last.CompareAndSwap(old, n) {
					break
				}
			}
		case strings.HasPrefix(text, echoPrefix):
			select {
			case lc.echo <- text[len(echoPrefix):]:
			default:
			}
		}
	}
}

func (lc *loadClient) alive() bool {
	select {
	case <-lc.done:
		return false
	default:
		return true
	}
}

// loadSender does group_send from one server's layer every loadInterval while running.
type loadSender struct {
	layer          canal.Layer
	seq            atomic.Int64 // last sequence number tried
	ok, failed     atomic.Int64
	lastOK         atomic.Int64
	stopCh, doneCh chan struct{}
}

func (s *loadSender) start() {
	s.stopCh, s.doneCh = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.doneCh)
		tick := time.NewTicker(loadInterval)
		defer tick.Stop()
		for {
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
			n := s.seq.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := s.layer.GroupSend(ctx, sharedGroup, canal.Message{"type": "load.message", "seq": strconv.FormatInt(n, 10)})
			cancel()
			if err != nil {
				s.failed.Add(1)
				continue
			}
			s.ok.Add(1)
			s.lastOK.Store(n)
		}
	}()
}

func (s *loadSender) stop() {
	close(s.stopCh)
	<-s.doneCh
}

// waitFor polls cond every 20 ms until it holds or bound passes, and returns how long
// it took; on timeout it returns the last description cond gave.
func waitFor(bound time.Duration, cond func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > bound {
			return time.Since(start), errors.New(why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allPast is a waitFor condition: every client has a load.message with seq > after.
func allPast(clients []*loadClient, after int64) func() (bool, string) {
	return func() (bool, string) {
		behind, low := 0, int64(-1)
		for _, lc := range clients {
			if n := lc.last.Load(); n <= after {
				behind++
				if low < 0 || n < low {
					low = n
				}
			}
		}
		return behind == 0, fmt.Sprintf("%d of %d clients have nothing past seq %d (lowest: %d)", behind, len(clients), after, low)
	}
}

// serverWorkerPool is the entry function of the server's worker pool, which keeps up
// to a fixed number of idle goroutines for reuse: bounded by design, and so left out
// of the leak check (their number is logged).
const serverWorkerPool = "github.com/canal-rt/canal/server.(*workers).loop"

// memSample is the process's goroutines, by entry function, and heap in use after
// two collections.
type memSample struct {
	goroutines int // all but the server's worker pool
	pooled     int // the server's worker pool
	census     map[string]int
	heap       uint64
}

func sampleMem() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memSample{census: goroutineCensus(), heap: ms.HeapInuse}
	for fn, n := range m.census {
		if fn == serverWorkerPool {
			m.pooled += n
		} else {
			m.goroutines += n
		}
	}
	return m
}

// goroutineCensus counts the goroutines by the function they started in, from the
// goroutine profile (debug=1: records of "N @ pcs" then "#\tpc\tfunc+off\tfile:line"
// lines, innermost frame first).
func goroutineCensus() map[string]int {
	var sb strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&sb, 1)
	census := make(map[string]int)
	for record := range strings.SplitSeq(sb.String(), "\n\n") {
		lines := strings.Split(strings.TrimSpace(record), "\n")
		countText, _, ok := strings.Cut(lines[0], " @ ")
		n, err := strconv.Atoi(countText)
		if !ok || err != nil {
			continue // the header
		}
		entry := "?"
		for _, l := range lines[1:] {
			if f := strings.Split(strings.TrimSpace(l), "\t"); len(f) >= 3 && f[0] == "#" {
				entry, _, _ = strings.Cut(f[2], "+")
			}
		}
		census[entry] += n
	}
	return census
}

// grown lists the entry functions with more goroutines in m than in base.
func (m memSample) grown(base memSample) string {
	var out []string
	for fn, n := range m.census {
		if d := n - base.census[fn]; d > 0 {
			out = append(out, fmt.Sprintf("+%d %s", d, fn))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func (m memSample) String() string {
	return fmt.Sprintf("%d goroutines (+%d idle in the servers' worker pools), heap in use %.1f MiB",
		m.goroutines, m.pooled, float64(m.heap)/(1<<20))
}

// Redis restarted under load: 200 sockets on two servers in one group, a group_send
// every 20 ms, Redis killed for a second and restarted empty. No socket or server
// dies, group messages reach everyone again within 5 s of the restart, and once the
// load stops the goroutines and the heap go back to their level before the outage.
func TestRedisRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 200 sockets and a Redis restart per backend")
	}
	// The backends in turn, not in parallel: each loads the machine on its own.
	for _, b := range redisBackends {
		t.Run(b.name, func(t *testing.T) { testRedisRestartUnderLoad(t, b) })
	}
}

func testRedisRestartUnderLoad(t *testing.T, b redisBackend) {
	redis := canaltest.StartRedis(t)
	servers := []*groupServer{
		startGroupServer(t, "A", b, redis.URL()),
		startGroupServer(t, "B", b, redis.URL()),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel) // after the sockets are dropped, the readers end with ctx

	// Connect, 16 at a time.
	start := time.Now()
	clients := make([]*loadClient, loadClients)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		dialErr error
	)
	sem := make(chan struct{}, 16)
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := canaltest.Dial(ctx, servers[i%2].URL("/ws/"), canaltest.DialOptions{})
			if err != nil {
				mu.Lock()
				dialErr = errors.Join(dialErr, err)
				mu.Unlock()
				return
			}
			clients[i] = &loadClient{c: c, echo: make(chan string, 1), done: make(chan struct{})}
		})
	}
	wg.Wait()
	for _, lc := range clients {
		if lc != nil {
			t.Cleanup(lc.c.Abort)
			go lc.read(ctx)
		}
	}
	if dialErr != nil {
		t.Fatalf("dial: %v", dialErr)
	}
	t.Logf("%d sockets on two servers in %v", loadClients, time.Since(start).Round(time.Millisecond))

	// Before the outage: every message reaches every socket.
	sender := &loadSender{layer: servers[0].layer}
	sender.start()
	if d, err := waitFor(10*time.Second, allPast(clients, 0)); err != nil {
		sender.stop()
		t.Fatalf("first group message: %v", err)
	} else {
		t.Logf("first group message reached all %d sockets in %v", loadClients, d.Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	sender.stop()
	if sender.failed.Load() != 0 {
		t.Fatalf("%d group sends failed with Redis up", sender.failed.Load())
	}
	sent := sender.ok.Load()
	if _, err := waitFor(10*time.Second, func() (bool, string) {
		short := 0
		for _, lc := range clients {
			if lc.got.Load() != sent {
				short++
			}
		}
		return short == 0, fmt.Sprintf("%d sockets lack some of the %d messages", short, sent)
	}); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // let the last writes and handlers finish
	baseline := sampleMem()
	t.Logf("before the outage: %d group sends, each to all %d sockets; baseline %v", sent, loadClients, baseline)

	// The outage, under load.
	sender.start()
	time.Sleep(time.Second)
	redis.Kill()
	killed := time.Now()
	time.Sleep(loadOutage)
	redis.Restart()
	restarted := time.Now()
	t.Logf("Redis down for %v", restarted.Sub(killed).Round(time.Millisecond))
	after := sender.seq.Load()
	if _, err := waitFor(loadRecovery-time.Since(restarted), allPast(clients, after)); err != nil {
		sender.stop()
		t.Fatalf("group messages did not reach everyone within %v of the restart: %v", loadRecovery, err)
	}
	t.Logf("group messages reached all %d sockets again %v after the restart", loadClients, time.Since(restarted).Round(time.Millisecond))
	time.Sleep(time.Second)
	sender.stop()
	t.Logf("group sends: %d delivered to Redis, %d failed while it was down", sender.ok.Load(), sender.failed.Load())

	// Every socket is open and answers.
	for i, lc := range clients {
		if !lc.alive() {
			t.Fatalf("socket %d (server %s) died: %v", i, servers[i%2].name, lc.err)
		}
		if err := lc.c.SendText(echoPrefix + strconv.Itoa(i)); err != nil {
			t.Fatalf("socket %d: send echo: %v", i, err)
		}
	}
	echoDeadline := time.After(10 * time.Second)
	for i, lc := range clients {
		select {
		case got := <-lc.echo:
			if got != strconv.Itoa(i) {
				t.Fatalf("socket %d: echo %q", i, got)
			}
		case <-lc.done:
			t.Fatalf("socket %d (server %s) died: %v", i, servers[i%2].name, lc.err)
		case <-echoDeadline:
			t.Fatalf("socket %d (server %s): no echo within 10 s", i, servers[i%2].name)
		}
	}
	// And the last message sent reached them all.
	if _, err := waitFor(10*time.Second, allPast(clients, sender.lastOK.Load()-1)); err != nil {
		t.Fatalf("after the load: %v", err)
	}

	// Back to the baseline once the load has stopped.
	heapLimit := baseline.heap + max(loadHeapSlack, uint64(float64(baseline.heap)*loadHeapRatio))
	var final memSample
	settled, err := waitFor(loadSettle, func() (bool, string) {
		final = sampleMem()
		return final.goroutines <= baseline.goroutines+loadGoroutine && final.heap <= heapLimit,
			fmt.Sprintf("after the load: %v; baseline %v (limits %d goroutines, %.1f MiB)",
				final, baseline, baseline.goroutines+loadGoroutine, float64(heapLimit)/(1<<20))
	})
	if err != nil {
		t.Fatalf("%v\ngoroutines added since, by entry function:\n%s", err, final.grown(baseline))
	}
	t.Logf("after the load: %v (baseline %v), %v after it stopped", final, baseline, settled.Round(time.Millisecond))

	for _, s := range servers {
		st := s.stats()
		t.Logf("server %s layer: %+v", s.name, st)
		if st.Reconnects == 0 {
			t.Errorf("server %s: the layer counted no reconnection", s.name)
		}
		if st.Malformed != 0 {
			t.Errorf("server %s: %d malformed messages", s.name, st.Malformed)
		}
		// The server still takes new sockets, which are in the group.
		c := dialGroup(ctx, t, s)
		if err := c.SendText(sayPrefix + "new on " + s.name); err != nil {
			t.Fatal(err)
		}
		wantText(ctx, t, "new socket on "+s.name, c, "s:new on "+s.name)
	}
}
