package consumer_test

import (
	"context"
	"fmt"
	"runtime"
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

// checkEvery is the position check's interval in these tests, below MinRecoverCheck
// (SetMinRecoverCheck), and checkGrace the time it leaves a live copy in flight:
// min(checkEvery/4, 1s).
const (
	checkEvery = 200 * time.Millisecond
	checkGrace = checkEvery / 4
)

// shortCheck lets the test's handlers check every checkEvery.
func shortCheck(t *testing.T) {
	t.Cleanup(consumer.SetMinRecoverCheck(checkEvery))
}

func withCheck(o *consumer.Options[*feed]) { o.RecoverCheck = checkEvery }

// lossyLayer is the narrow edge where these tests lose messages and Redis reads: a
// layer that swallows the live copy of chosen offsets on the way to one attached
// channel (the victim'th Attach, from 0), as a full channel in Redis does, counts
// the reads of a group's position alone (History with a zero since: the check's)
// and fails them on demand.
type lossyLayer struct {
	canal.HistoryLayer
	victim  int
	attachs atomic.Int64
	fail    atomic.Bool

	mu    sync.Mutex
	drop  map[uint64]bool // offsets to swallow, once each
	reads map[string]int  // position reads per group
}

func newLossy(l canal.HistoryLayer, victim int, drop ...uint64) *lossyLayer {
	ll := &lossyLayer{HistoryLayer: l, victim: victim, drop: map[uint64]bool{}, reads: map[string]int{}}
	for _, o := range drop {
		ll.drop[o] = true
	}
	return ll
}

func (l *lossyLayer) Attach(ctx context.Context, prefix string, deliver func(canal.Message) bool) (string, func(), error) {
	victim := int(l.attachs.Add(1)-1) == l.victim
	return l.HistoryLayer.Attach(ctx, prefix, func(m canal.Message) bool {
		if _, p, ok := canal.PositionOf(m); ok && victim && l.swallow(p.Offset) {
			return true // taken, and lost
		}
		return deliver(m)
	})
}

func (l *lossyLayer) swallow(off uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.drop[off] {
		delete(l.drop, off)
		return true
	}
	return false
}

func (l *lossyLayer) History(ctx context.Context, group string, since canal.Position, limit int) ([]canal.Message, canal.Position, error) {
	if since.Epoch == "" {
		l.mu.Lock()
		l.reads[group]++
		l.mu.Unlock()
		if l.fail.Load() {
			return nil, canal.Position{}, fmt.Errorf("lossy: %w", canal.ErrUnavailable)
		}
	}
	return l.HistoryLayer.History(ctx, group, since, limit)
}

// takeReads returns the position reads per group since the last call.
func (l *lossyLayer) takeReads() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reads
	l.reads = map[string]int{}
	return r
}

// checkers counts the running position-check goroutines of every Handler.
func checkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "consumer.(*recoverChecker).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitCheckers waits (at most 5 s) until want checker goroutines run.
func waitCheckers(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for checkers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d position-check goroutines, want %d", checkers(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// historyLayers are the layers the check is tested on: the memory layer and two
// Redis layers (the server's and a publisher's, as two processes) on a private
// redis-server.
var historyLayers = []struct {
	name string
	make func(t *testing.T) (srv, pub canal.HistoryLayer, r *canaltest.Redis)
}{
	{"memory", func(t *testing.T) (canal.HistoryLayer, canal.HistoryLayer, *canaltest.Redis) {
		l, err := layers.NewMemory(layers.MemoryOptions{History: rules})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(context.Background()) })
		return l, l, nil
	}},
	{"redis", func(t *testing.T) (canal.HistoryLayer, canal.HistoryLayer, *canaltest.Redis) {
		r := canaltest.StartRedis(t)
		return newRedisLayer(t, r.URL(), rules), newRedisLayer(t, r.URL(), rules), r
	}},
}

// dialFeed connects a feed client and reads its first canal.recover frame.
func dialFeed(ctx context.Context, t *testing.T, srv *canaltest.Server) (*feedClient, *canaltest.Communicator) {
	t.Helper()
	c, err := canaltest.Dial(ctx, srv.URL("/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Abort)
	fc := &feedClient{}
	if err := fc.read(ctx, t, c); err != nil || !slicesEqual(fc.recovered, []bool{true}) {
		t.Fatalf("first frame: recover %v, err %v", fc.recovered, err)
	}
	return fc, c
}

// TestRecoverCheckLostLast: the live copy of a group's last message is lost on the
// way to one connection and nothing follows it; the position check finds it within
// its interval and the client gets it, in order, with its position, once. The other
// connections, and every connection when nothing was lost, get each message once
// and nothing more, and the check starts no catch-up for them.
func TestRecoverCheckLostLast(t *testing.T) {
	shortCheck(t)
	for _, hl := range historyLayers {
		for _, tc := range []struct {
			name   string
			frames bool
			total  int
			drop   []uint64 // offsets lost on the way to connection 1
		}{
			{"last of three lost, frames", true, 3, []uint64{3}},
			{"last of three lost, events", false, 3, []uint64{3}},
			{"the only message lost", true, 1, []uint64{1}},
			{"last two lost", false, 4, []uint64{3, 4}},
			{"nothing lost", true, 3, nil},
		} {
			t.Run(hl.name+"/"+tc.name, func(t *testing.T) {
				waitCheckers(t, 0) // earlier tests' connections are gone
				inner, pub, _ := hl.make(t)
				l := newLossy(inner, 1, tc.drop...)
				h := feedHandler(t, l, tc.frames, withCheck)
				srv := canaltest.NewServer(t, h, server.Options{Logger: quiet})
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				var fcs []*feedClient
				var cs []*canaltest.Communicator
				for range 3 {
					fc, c := dialFeed(ctx, t, srv)
					fcs, cs = append(fcs, fc), append(cs, c)
				}
				waitCheckers(t, 1) // one for the Handler, whatever the connections
				if err := publish(ctx, pub, 1, tc.total, 0); err != nil {
					t.Fatal(err)
				}
				published := time.Now()
				// Published just after a round's read, a lost message is found at the
				// next: one interval, the grace, and the catch-up (slack for -race on a
				// busy machine).
				bound := checkEvery + checkGrace + 500*time.Millisecond
				for i, fc := range fcs {
					rctx, rcancel := context.WithDeadline(ctx, published.Add(bound))
					for len(fc.got) < tc.total {
						if err := fc.read(rctx, t, cs[i]); err != nil {
							rcancel()
							t.Fatalf("connection %d after %v, %v after the publication: %v", i, fc.got, time.Since(published), err)
						}
					}
					rcancel()
					if i == 1 && len(tc.drop) > 0 {
						t.Logf("lost message delivered %v after its publication", time.Since(published).Round(time.Millisecond))
					}
					checkSeq(t, fc.got, tc.total)
					if want := [2]any{uint64(tc.total), fc.pos[1]}; fc.pos != want || fc.pos[1] == "" {
						t.Fatalf("connection %d at %v, want offset %d", i, fc.pos, tc.total)
					}
				}
				// Three more rounds: no duplicate, no frame of any kind.
				for i, c := range cs {
					d := time.Duration(0)
					if i == 0 {
						d = 3*checkEvery + checkGrace
					}
					if err := c.ExpectNothing(d + 10*time.Millisecond); err != nil {
						t.Fatalf("connection %d: %v", i, err)
					}
				}
				wantCatchups := uint64(0)
				if len(tc.drop) > 0 {
					wantCatchups = 1
				}
				if st := h.Stats(); st.RecoverCheckCatchups != wantCatchups || st.RecoverCheckErrors != 0 {
					t.Fatalf("stats %+v, want %d catch-ups and no error", st, wantCatchups)
				}
				for _, c := range cs {
					c.Close(1000)
				}
				waitCheckers(t, 0)
			})
		}
	}
}

// room is a recovering consumer that joins the group its "room" query parameter
// names, and leaves it when the client sends "leave".
type room struct{}

func (*room) Connect(ctx context.Context, c *consumer.Conn) error {
	if err := c.GroupAdd(ctx, "feed_"+c.Scope().Query().Get("room")); err != nil {
		return err
	}
	return c.Accept()
}

func (*room) Receive(ctx context.Context, c *consumer.Conn, f canal.Frame) error {
	if string(f.Data) == "leave" {
		return c.GroupDiscard(ctx, "feed_"+c.Scope().Query().Get("room"))
	}
	return nil
}

func roomHandler(t *testing.T, l canal.Layer) *consumer.Handler[*room] {
	t.Helper()
	h, err := consumer.New(func() *room { return &room{} }, consumer.Options[*room]{
		Layer: l, Recover: []string{"feed_*"}, RecoverCheck: checkEvery, Logger: quiet,
		Frames: map[string]consumer.FrameFunc{"feed.item": consumer.JSONFrame(func(m canal.Message) any {
			return map[string]any{"n": m["n"]}
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// dialRooms connects n clients spread over the rooms and waits for each one's
// canal.recover frame: from then on, only the check reads a group's position.
func dialRooms(ctx context.Context, t *testing.T, srv *canaltest.Server, n int, rooms ...string) []*canaltest.Communicator {
	t.Helper()
	var cs []*canaltest.Communicator
	for i := range n {
		c, err := canaltest.Dial(ctx, srv.URL("/?room="+rooms[i%len(rooms)]), canaltest.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Abort)
		var m struct{ Type string }
		if err := c.ReceiveJSON(ctx, &m); err != nil || m.Type != consumer.EventRecover {
			t.Fatalf("client %d: first frame %q, %v", i, m.Type, err)
		}
		cs = append(cs, c)
	}
	return cs
}

// redisCalls returns the calls of the Lua scripts (the history read is one) Redis
// has served, from INFO commandstats.
func redisCalls(ctx context.Context, t *testing.T, r *canaltest.Redis) int {
	t.Helper()
	info, err := r.Client(t).Do(ctx, r.Client(t).B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(line, cmd); ok {
				v, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				if err != nil {
					t.Fatalf("commandstats %q: %v", line, err)
				}
				n += v
			}
		}
	}
	return n
}

// TestRecoverCheckReads: the check costs one read of a group's position per interval
// and Handler, whatever the number of connections in the group: counted at the layer
// and, on Redis, in INFO commandstats.
func TestRecoverCheckReads(t *testing.T) {
	shortCheck(t)
	const rounds = 5
	for _, hl := range historyLayers {
		for _, conns := range []int{1, 2, 24} {
			t.Run(fmt.Sprintf("%s/%d connections", hl.name, conns), func(t *testing.T) {
				waitCheckers(t, 0)
				inner, _, r := hl.make(t)
				l := newLossy(inner, -1)
				srv := canaltest.NewServer(t, roomHandler(t, l), server.Options{Logger: quiet})
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				rooms := []string{"a", "b"}[:min(conns, 2)]
				cs := dialRooms(ctx, t, srv, conns, rooms...)
				waitCheckers(t, 1)

				l.takeReads()
				before := 0
				if r != nil {
					before = redisCalls(ctx, t, r)
				}
				time.Sleep(rounds * checkEvery)
				reads := l.takeReads()
				total := 0
				for _, g := range rooms {
					n := reads["feed_"+g]
					total += n
					// rounds ticks in the window, give or take one at either end.
					if n < rounds-1 || n > rounds+1 {
						t.Errorf("group feed_%s: %d position reads in %d intervals with %d connections, want %d±1",
							g, n, rounds, conns, rounds)
					}
				}
				if len(reads) != len(rooms) {
					t.Errorf("reads of %v, want the groups %v only", reads, rooms)
				}
				if r != nil {
					// The window's script calls are the check's reads (nothing is
					// published): one Redis call each.
					calls := redisCalls(ctx, t, r) - before
					if calls < total-len(rooms) || calls > total+len(rooms) {
						t.Errorf("Redis served %d script calls in the window, the layer saw %d reads", calls, total)
					}
					t.Logf("Redis: %d script calls in the window", calls)
				}
				t.Logf("%d connections in %d groups: %v position reads in %d intervals", conns, len(rooms), reads, rounds)
				for _, c := range cs {
					c.Close(1000)
				}
				waitCheckers(t, 0)
			})
		}
	}
}

// TestRecoverCheckStops: the check's one goroutine per Handler starts with the first
// recovered connection and stops when the last one ends (closed, dropped, or out of
// its group), and starts again with the next.
func TestRecoverCheckStops(t *testing.T) {
	shortCheck(t)
	waitCheckers(t, 0)
	l, err := layers.NewMemory(layers.MemoryOptions{History: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	h := roomHandler(t, l)
	srv := canaltest.NewServer(t, h, server.Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name string
		end  func(*canaltest.Communicator) error
	}{
		{"closed", func(c *canaltest.Communicator) error { return c.Close(1000) }},
		{"dropped", func(c *canaltest.Communicator) error { c.Abort(); return nil }},
		{"left the group", func(c *canaltest.Communicator) error { return c.SendText("leave") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := dialRooms(ctx, t, srv, 6, "a", "b", "c")
			waitCheckers(t, 1)
			for i, c := range cs {
				if err := tc.end(c); err != nil {
					t.Fatal(err)
				}
				if i < len(cs)-1 {
					time.Sleep(checkEvery / 4) // rounds run meanwhile
					if n := checkers(); n != 1 {
						t.Fatalf("%d goroutines with %d connections left, want 1", n, len(cs)-1-i)
					}
				}
			}
			waitCheckers(t, 0)
		})
	}
}

// TestRecoverCheckErrors: reads that fail are counted and tried again at the next
// interval; they close no connection, and the check goes on when reads work again.
// With Redis killed and restarted empty, the check then finds the history lost (a
// new epoch) and the client is told so without any message being published.
func TestRecoverCheckErrors(t *testing.T) {
	shortCheck(t)
	for _, hl := range historyLayers {
		t.Run(hl.name, func(t *testing.T) {
			waitCheckers(t, 0)
			inner, pub, r := hl.make(t)
			l := newLossy(inner, 0, 2)
			h := feedHandler(t, l, true, withCheck)
			srv := canaltest.NewServer(t, h, server.Options{Logger: quiet})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			fc, c := dialFeed(ctx, t, srv)
			if err := publish(ctx, pub, 1, 1, 0); err != nil {
				t.Fatal(err)
			}
			if err := fc.read(ctx, t, c); err != nil {
				t.Fatal(err)
			}

			if r != nil {
				r.Kill()
			} else {
				l.fail.Store(true)
			}
			deadline := time.Now().Add(10 * time.Second)
			for h.Stats().RecoverCheckErrors < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("stats %+v after 10 s of failed reads", h.Stats())
				}
				time.Sleep(checkEvery / 4)
			}
			if err := c.ExpectNothing(checkEvery); err != nil {
				t.Fatalf("while reads fail: %v", err)
			}

			if r == nil {
				// Reads work again: message 2, lost on the way, is found.
				l.fail.Store(false)
				if err := publish(ctx, pub, 2, 2, 0); err != nil {
					t.Fatal(err)
				}
				if err := fc.read(ctx, t, c); err != nil {
					t.Fatal(err)
				}
				checkSeq(t, fc.got, 2)
				if st := h.Stats(); st.RecoverCheckCatchups != 1 {
					t.Fatalf("stats %+v, want 1 catch-up", st)
				}
				return
			}
			// Redis is back, empty: the client's epoch is gone.
			old := fc.pos
			r.Restart()
			if err := fc.read(ctx, t, c); err != nil {
				t.Fatal(err)
			}
			if !slicesEqual(fc.recovered, []bool{true, false}) || fc.pos[1] == old[1] {
				t.Fatalf("after Redis restarted empty: recover frames %v at %v (was %v)", fc.recovered, fc.pos, old)
			}
			if st := h.Stats(); st.RecoverCheckCatchups != 1 {
				t.Fatalf("stats %+v, want 1 catch-up", st)
			}
			if err := c.ExpectNothing(2 * checkEvery); err != nil {
				t.Fatalf("after the new epoch: %v", err)
			}
		})
	}
}

// TestRecoverCheckOff: a negative RecoverCheck runs no check (no goroutine), and then
// a lost last message stays lost until the group's next message shows the gap: the
// case the check is for.
func TestRecoverCheckOff(t *testing.T) {
	waitCheckers(t, 0)
	mem, err := layers.NewMemory(layers.MemoryOptions{History: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close(context.Background())
	l := newLossy(mem, 0, 2)
	h := feedHandler(t, l, true, func(o *consumer.Options[*feed]) { o.RecoverCheck = -1 })
	srv := canaltest.NewServer(t, h, server.Options{Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc, c := dialFeed(ctx, t, srv)
	if err := publish(ctx, mem, 1, 2, 0); err != nil {
		t.Fatal(err)
	}
	if err := fc.read(ctx, t, c); err != nil {
		t.Fatal(err)
	}
	if err := c.ExpectNothing(3 * checkEvery); err != nil {
		t.Fatalf("message 2 came without a check: %v", err)
	}
	if n := checkers(); n != 0 {
		t.Fatalf("%d position-check goroutines with the check off", n)
	}
	if err := publish(ctx, mem, 3, 3, 0); err != nil { // the gap shows
		t.Fatal(err)
	}
	for len(fc.got) < 3 {
		if err := fc.read(ctx, t, c); err != nil {
			t.Fatal(err)
		}
	}
	checkSeq(t, fc.got, 3)
	if reads := l.takeReads(); reads[recGroup] != 1 { // the first catch-up's, no more
		t.Fatalf("position reads %v, want the first catch-up's only", reads)
	}
}
