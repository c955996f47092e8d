package layers

// Stale group members: a Go process that dies without GroupDiscard must not leave its
// channels in groups for GroupExpiry. See redis_liveness.go.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal/canaltest"
)

// testLiveness is short, so that a crash is detected within a few seconds.
const testLiveness = 1500 * time.Millisecond

// staleBound bounds the detection of a crashed process with testLiveness: its key
// expires within Liveness, then two checks 1.5 refresh periods apart, plus the
// janitor's sweep (2 × Liveness) and margin for a loaded machine.
const staleBound = 4*testLiveness + 5*time.Second

// crash stops the layer's goroutines as if its process had died: no Close, no
// GroupDiscard; its liveness key expires on its own.
func (r *Redis) crash() {
	r.stop()
	r.wg.Wait()
}

// djangoName returns a process-local channel name as channels_redis makes it:
// "specific.<uuid4 hex>!<uuid4 hex>".
func djangoName() string {
	uuid4 := func() string {
		var b [16]byte
		rand.Read(b[:])
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		return hex.EncodeToString(b[:])
	}
	return "specific." + uuid4() + "!" + uuid4()
}

func TestProcessIDs(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		pid := newProcessID()
		if len(pid) != 32 || strings.Trim(pid, "0123456789abcdef") != "" || seen[pid] {
			t.Fatalf("bad or repeated process id %q", pid)
		}
		seen[pid] = true
		if !isGoProcessID(pid) {
			t.Fatalf("%q not recognised", pid)
		}
		for _, name := range []string{"specific." + pid + "!abc", "chat.worker." + pid + "!" + pid, "a." + pid + "!"} {
			if goProcessID(name) != pid || ValidChannelName(name) != nil {
				t.Fatalf("goProcessID(%q) = %q", name, goProcessID(name))
			}
		}
		for _, name := range []string{pid + "!abc", "specific" + pid + "!x", "specific." + pid, "specific.x" + pid[1:] + "!y"} {
			if goProcessID(name) != "" {
				t.Fatalf("goProcessID(%q) = %q; want none", name, goProcessID(name))
			}
		}
	}
	for range 10000 {
		name := djangoName()
		if goProcessID(name) != "" {
			t.Fatalf("a Django name passes for Go's: %q", name)
		}
	}
	if goProcessID("specific."+strings.ToUpper(newProcessID())+"!x") != "" {
		t.Fatal("upper-case hex accepted")
	}
}

func TestRedisStaleMembers(t *testing.T) {
	t.Parallel()
	runBackends(t, []backendCase{
		{"crashed process", staleCrashed},
		{"flush keeps live members", staleAfterFlush},
		{"closed process", staleClosed},
		{"disabled", staleDisabled},
	})
}

// staleCrashed kills a process that has members in two groups: the survivor's
// GroupSend stops delivering to them and removes them, its janitor cleans the group
// nobody sends to, and other names (Django's, untagged ones) stay.
func staleCrashed(t *testing.T, b *redisBackend) {
	p := b.prefix()
	opts := RedisOptions{Prefix: p, Liveness: testLiveness}
	dead := b.core(t, opts)
	live := b.core(t, opts)
	c := b.client
	ctx := context.Background()
	var deadChans []string
	var deadInboxes []inbox
	for range 3 {
		ch, in := attachInbox(t, dead)
		deadChans = append(deadChans, ch)
		deadInboxes = append(deadInboxes, in)
		for _, g := range []string{"room", "quiet"} {
			if err := dead.GroupAdd(ctx, g, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	mine, myInbox := attachInbox(t, live)
	live.GroupAdd(ctx, "quiet", mine) // the survivor's janitor watches "quiet"
	django := djangoName()
	legacy := "specific." + hex.EncodeToString([]byte("an untagged pid!"))[:32] + "!x"
	for _, g := range []string{"room", "quiet"} {
		for _, name := range []string{django, legacy} {
			c.Do(ctx, c.B().Zadd().Key(p+":group:"+g).ScoreMember().ScoreMember(nowf(), name).Build())
		}
	}
	if !b.exists(t, p+":canal:alive:"+dead.ProcessID()) {
		waitFor(t, "the liveness key", func() bool { return b.exists(t, p+":canal:alive:"+dead.ProcessID()) })
	}

	// Alive: delivered, kept, across several checks.
	deadline := time.Now().Add(2 * testLiveness)
	for time.Now().Before(deadline) {
		if err := live.GroupSend(ctx, "room", msg("alive")); err != nil {
			t.Fatal(err)
		}
		for _, in := range deadInboxes {
			in.next(t)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(zmembers(t, c, p+":group:room")); n != 5 || live.Stats().StaleMembers != 0 {
		t.Fatalf("a live process's members were removed: %d left, stats %+v", n, live.Stats())
	}

	dead.crash()
	crashed := time.Now()
	queue := p + nonLocal(deadChans[0])
	want := []string{django, legacy}
	slices.Sort(want)
	for {
		if err := live.GroupSend(ctx, "room", msg("after the crash")); err != nil {
			t.Fatal(err)
		}
		got := zmembers(t, c, p+":group:room")
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if time.Since(crashed) > staleBound {
			t.Fatalf("members %q %v after the crash; want only %q", got, time.Since(crashed), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: crashed process's members removed by GroupSend after %v", b.name, time.Since(crashed))
	// No longer delivered: the dead process's queue gets nothing more.
	before := len(zmembers(t, c, queue))
	if err := live.GroupSend(ctx, "room", msg("later")); err != nil {
		t.Fatal(err)
	}
	if after := len(zmembers(t, c, queue)); after != before {
		t.Fatalf("the dead process's queue went from %d to %d messages", before, after)
	}
	// The janitor cleans "quiet", where nobody sends.
	wantQuiet := []string{django, legacy, mine}
	slices.Sort(wantQuiet)
	waitForWithin(t, "the janitor", staleBound, func() bool {
		got := zmembers(t, c, p+":group:quiet")
		slices.Sort(got)
		return slices.Equal(got, wantQuiet)
	})
	t.Logf("%s: quiet group cleaned %v after the crash", b.name, time.Since(crashed))
	if st := live.Stats(); st.StaleMembers != 6 {
		t.Fatalf("stats %+v; want 6 stale members", st)
	}
	live.GroupSend(ctx, "quiet", msg("still here"))
	if myInbox.next(t).Type() != "still here" {
		t.Fatal("the survivor's member lost")
	}
}

// staleAfterFlush flushes everything, liveness keys included: a live process whose
// channel joins again before its next refresh keeps its member.
func staleAfterFlush(t *testing.T, b *redisBackend) {
	p := b.prefix()
	opts := RedisOptions{Prefix: p, Liveness: testLiveness}
	a := b.core(t, opts)
	other := b.core(t, opts)
	ctx := context.Background()
	ch, in := attachInbox(t, a)
	a.GroupAdd(ctx, "room", ch)
	waitFor(t, "the liveness key", func() bool { return b.exists(t, p+":canal:alive:"+a.ProcessID()) })
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b.exists(t, p+":canal:alive:"+a.ProcessID()) {
		t.Fatal("Flush kept the liveness key")
	}
	a.GroupAdd(ctx, "room", ch) // joins again at once, before its key is back
	deadline := time.Now().Add(3 * testLiveness)
	n := 0
	for time.Now().Before(deadline) {
		if err := other.GroupSend(ctx, "room", msg("tick", "n", n)); err != nil {
			t.Fatal(err)
		}
		if got := in.next(t); got["n"] != int64(n) {
			t.Fatalf("got %v; want tick %d", got, n)
		}
		n++
		time.Sleep(50 * time.Millisecond)
	}
	if st := other.Stats(); st.StaleMembers != 0 {
		t.Fatalf("a live process's member was removed: %+v", st)
	}
	// The flushed process noticed that its key had gone.
	waitFor(t, "the lapse", func() bool { return a.Stats().LivenessLapses == 1 })
	if st := other.Stats(); st.LivenessLapses != 0 {
		t.Fatalf("the process that flushed counts its own flush as a lapse: %+v", st)
	}
}

// staleClosed closes a process without GroupDiscard: Close deletes its key, and its
// members go.
func staleClosed(t *testing.T, b *redisBackend) {
	p := b.prefix()
	opts := RedisOptions{Prefix: p, Liveness: testLiveness}
	gone := b.core(t, opts)
	live := b.core(t, opts)
	ctx := context.Background()
	ch, _ := attachInbox(t, gone)
	gone.GroupAdd(ctx, "room", ch)
	waitFor(t, "the liveness key", func() bool { return b.exists(t, p+":canal:alive:"+gone.ProcessID()) })
	if err := gone.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitForWithin(t, "the removal", staleBound, func() bool {
		live.GroupSend(ctx, "room", msg("x"))
		return len(zmembers(t, b.client, p+":group:room")) == 0
	})
}

// staleDisabled: with Liveness < 0 there is no key and nothing is removed.
func staleDisabled(t *testing.T, b *redisBackend) {
	p := b.prefix()
	off := b.core(t, RedisOptions{Prefix: p, Liveness: -1})
	live := b.core(t, RedisOptions{Prefix: p, Liveness: testLiveness})
	ctx := context.Background()
	ch, in := attachInbox(t, off)
	off.GroupAdd(ctx, "room", ch)
	time.Sleep(100 * time.Millisecond)
	if keys := b.keys(t, p+":canal:*"); len(keys) != 0 {
		t.Fatalf("keys %q with Liveness off", keys)
	}
	// Its process id is not a tagged one: others never take its members for stale.
	if isGoProcessID(off.ProcessID()) {
		t.Fatal("a process with Liveness off has a tagged process id")
	}
	// And it removes nothing itself: a crashed process's members stay.
	gone := b.core(t, RedisOptions{Prefix: p, Liveness: testLiveness})
	gch, _ := attachInbox(t, gone)
	gone.GroupAdd(ctx, "g2", gch)
	gone.crash()
	deadline := time.Now().Add(3 * testLiveness)
	for time.Now().Before(deadline) {
		live.GroupSend(ctx, "room", msg("x"))
		in.next(t)
		off.GroupSend(ctx, "g2", msg("x"))
		time.Sleep(100 * time.Millisecond)
	}
	if got := zmembers(t, b.client, p+":group:room"); len(got) != 1 || live.Stats().StaleMembers != 0 {
		t.Fatalf("members %q, stats %+v", got, live.Stats())
	}
	if got := zmembers(t, b.client, p+":group:g2"); len(got) != 1 || off.Stats().StaleMembers != 0 {
		t.Fatalf("members %q, stats %+v", got, off.Stats())
	}
}

// waitForWithin polls cond for up to d.
func waitForWithin(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInteropStaleMembersDjango checks with a real Django peer that the cleanup never
// touches Django's members.
func TestInteropStaleMembersDjango(t *testing.T) {
	t.Parallel()
	suites := pySuites(t)
	srv := canaltest.StartRedis(t)
	p := startPeer(t, suites[0], srv.URL(), nil)
	opts := RedisOptions{Hosts: []string{srv.URL()}, Liveness: testLiveness, Logger: quietLogger, ClientOptions: fastClient}
	ctx := context.Background()
	open := func() *Redis {
		l, err := NewRedis(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(ctx) })
		return l
	}
	dead, live := open(), open()
	d := p.newChannel()
	p.ok(map[string]any{"op": "group_add", "group": "room", "channel": d})
	goCh, _ := attachInbox(t, dead)
	dead.GroupAdd(ctx, "room", goCh)
	dead.crash()
	c := srv.Client(t)
	waitForWithin(t, "the removal", staleBound, func() bool {
		live.GroupSend(ctx, "room", msg("x"))
		got := zmembers(t, c, "asgi:group:room")
		if len(got) == 1 && got[0] == d {
			return true
		}
		time.Sleep(500 * time.Millisecond) // few messages for Django to drain
		return false
	})
	// Django's channel still gets every message, and Django's own group_send too.
	for p.receive(d, 50*time.Millisecond) != nil { // the messages sent while waiting
	}
	if err := live.GroupSend(ctx, "room", msg("chat.message", "text", "for django")); err != nil {
		t.Fatal(err)
	}
	p.expect(d, `{'type': 'chat.message', 'text': 'for django'}`)
	p.ok(map[string]any{"op": "group_send", "group": "room", "py": `{'type': 'from.django'}`})
	p.expect(d, `{'type': 'from.django'}`)
	if n := live.Stats().StaleMembers; n != 1 {
		t.Fatalf("removed %d members; want only the dead Go process's one", n)
	}
}
