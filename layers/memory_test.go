package layers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/canal-rt/canal"
)

// wait bounds every blocking step of these tests.
const wait = 5 * time.Second

func newMem(t testing.TB, opts MemoryOptions) *Memory {
	t.Helper()
	m, err := NewMemory(opts)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func msg(typ string, kv ...any) canal.Message {
	m := canal.Message{"type": typ}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func mustSend(t testing.TB, m *Memory, channel string, message canal.Message) {
	t.Helper()
	if err := m.Send(context.Background(), channel, message); err != nil {
		t.Fatalf("Send(%q): %v", channel, err)
	}
}

func mustRecv(t testing.TB, m *Memory, channel string) canal.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, err := m.Receive(ctx, channel)
	if err != nil {
		t.Fatalf("Receive(%q): %v", channel, err)
	}
	return got
}

// expectEmpty checks that channel has nothing to receive within d.
func expectEmpty(t testing.TB, m *Memory, channel string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if got, err := m.Receive(ctx, channel); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive(%q) = %v, %v; want nothing", channel, got, err)
	}
}

// recorder is an attached channel's inbox that never blocks.
type recorder struct {
	mu   sync.Mutex
	msgs []canal.Message
	full atomic.Bool // when set, deliver reports a full queue
}

func (r *recorder) deliver(m canal.Message) bool {
	if r.full.Load() {
		return false
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return true
}

func (r *recorder) got() []canal.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]canal.Message(nil), r.msgs...)
}

func attach(t testing.TB, m *Memory) (string, *recorder, func()) {
	t.Helper()
	r := &recorder{}
	name, detach, err := m.Attach(context.Background(), "", r.deliver)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return name, r, detach
}

func TestNewMemoryOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    MemoryOptions
		wantErr string
	}{
		{name: "zero value", opts: MemoryOptions{}},
		{name: "all set", opts: MemoryOptions{Expiry: time.Second, GroupExpiry: time.Minute, Capacity: 5,
			ChannelCapacity: []Capacity{{Pattern: "http.*", Size: 10}}}},
		{name: "negative expiry", opts: MemoryOptions{Expiry: -1}, wantErr: "Expiry"},
		{name: "negative group expiry", opts: MemoryOptions{GroupExpiry: -time.Second}, wantErr: "GroupExpiry"},
		{name: "negative capacity", opts: MemoryOptions{Capacity: -1}, wantErr: "Capacity"},
		{name: "bad glob", opts: MemoryOptions{ChannelCapacity: []Capacity{{Pattern: "[", Size: 1}}}, wantErr: "pattern"},
		{name: "zero pattern size", opts: MemoryOptions{ChannelCapacity: []Capacity{{Pattern: "a*", Size: 0}}}, wantErr: "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := NewMemory(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "layers: ") {
					t.Fatalf("err = %v; want a layers: error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
		})
	}

	m := newMem(t, MemoryOptions{})
	if m.expiry != DefaultExpiry || m.groupExpiry != DefaultGroupExpiry || m.capacity != DefaultCapacity {
		t.Errorf("defaults = %v, %v, %d", m.expiry, m.groupExpiry, m.capacity)
	}
	// The options' slice is copied: later edits by the caller do not leak in.
	pats := []Capacity{{Pattern: "a*", Size: 1}}
	m2 := newMem(t, MemoryOptions{ChannelCapacity: pats})
	pats[0].Size = 50
	if m2.patterns[0].Size != 1 {
		t.Error("ChannelCapacity not copied")
	}
}

func TestMemoryChannelNameValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		valid bool
	}{
		{strings.Repeat("a", 99), true},
		{strings.Repeat("a", 100), false},
		{"thumbnails", true},
		{"A-z_0.9", true},
		{"specific.abc!", true},
		{"specific.abc!local_part-1.x", true},
		{strings.Repeat("a", 90) + "!" + strings.Repeat("b", 8), true}, // 99 with '!'
		{strings.Repeat("a", 90) + "!" + strings.Repeat("b", 9), false},
		{"", false},
		{"has space", false},
		{"slash/no", false},
		{"colon:no", false},
		{"é", false},
		{"!local", false},
		{"a!b!c", false},
		{"a!b c", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20s/len%d", tt.name, len(tt.name)), func(t *testing.T) {
			t.Parallel()
			m := newMem(t, MemoryOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			check := func(op string, err error) {
				t.Helper()
				if tt.valid && err != nil {
					t.Errorf("%s: unexpected error %v", op, err)
				}
				if !tt.valid && (!errors.Is(err, canal.ErrInvalidName) || !strings.HasPrefix(err.Error(), "layers: ")) {
					t.Errorf("%s: err = %v; want layers: … wrapping ErrInvalidName", op, err)
				}
			}
			check("Send", m.Send(ctx, tt.name, msg("x.y")))
			_, err := m.Receive(ctx, tt.name) // valid: gets the message just sent
			check("Receive", err)
			check("GroupAdd", m.GroupAdd(ctx, "g", tt.name))
			check("GroupDiscard", m.GroupDiscard(ctx, "g", tt.name))
		})
	}
}

// TestValidNamesMatchRegexp checks the hand-written validators against Channels'
// regexps (as Go reads them) on edge cases and random strings.
func TestValidNamesMatchRegexp(t *testing.T) {
	t.Parallel()
	channelRe := regexp.MustCompile(`^[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?$`)
	groupRe := regexp.MustCompile(`^[a-zA-Z\d\-_.]+$`)
	check := func(name string) {
		wantCh := len(name) <= MaxNameLength && channelRe.MatchString(name)
		wantGr := len(name) <= MaxNameLength && groupRe.MatchString(name)
		if got := ValidChannelName(name) == nil; got != wantCh {
			t.Errorf("ValidChannelName(%q) ok=%v; regexp says %v", name, got, wantCh)
		}
		if got := ValidGroupName(name) == nil; got != wantGr {
			t.Errorf("ValidGroupName(%q) ok=%v; regexp says %v", name, got, wantGr)
		}
	}
	for _, name := range []string{"", "!", "a!", "!a", "a!!", "a!b!", "a\n", "a!\n", "\x00", "é", "a!é",
		"a b", "a/b", "~", "`", "[", "@", ":", "{", strings.Repeat("z", 99), strings.Repeat("z", 100)} {
		check(name)
	}
	const alphabet = "aZ09-_.!! @/é\n"
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(string(b))
	}
	for c := range 256 { // every byte, alone and as a local part
		check(string([]byte{byte(c)}))
		check("a!" + string([]byte{byte(c)}))
	}
}

func TestMemoryGroupNameValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		valid bool
	}{
		{strings.Repeat("g", 99), true},
		{strings.Repeat("g", 100), false},
		{"chat_lobby.1-a", true},
		{"", false},
		{"room!x", false},
		{"room!", false},
		{"has space", false},
		{"ünï", false},
	}
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	for _, tt := range tests {
		for op, err := range map[string]error{
			"GroupAdd":     m.GroupAdd(ctx, tt.name, "chan"),
			"GroupDiscard": m.GroupDiscard(ctx, tt.name, "chan"),
			"GroupSend":    m.GroupSend(ctx, tt.name, msg("x.y")),
		} {
			if tt.valid != (err == nil) || (!tt.valid && !errors.Is(err, canal.ErrInvalidName)) {
				t.Errorf("%s(%q) = %v; valid %v", op, tt.name, err, tt.valid)
			}
		}
	}
}

func TestMemoryPrefixValidation(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	nop := func(canal.Message) bool { return true }
	for _, prefix := range []string{"bad prefix", "a!b", strings.Repeat("p", 80), "é"} {
		if _, err := m.NewChannel(ctx, prefix); !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("NewChannel(%q) err = %v", prefix, err)
		}
		if _, _, err := m.Attach(ctx, prefix, nop); !errors.Is(err, canal.ErrInvalidName) {
			t.Errorf("Attach(%q) err = %v", prefix, err)
		}
	}
	if _, _, err := m.Attach(ctx, "", nil); err == nil {
		t.Error("Attach with nil deliver: no error")
	}
	if len(m.listeners) != 0 {
		t.Errorf("failed Attach left %d listeners", len(m.listeners))
	}
}

func TestMemoryMessageValidation(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	tests := []struct {
		name string
		msg  canal.Message
		ok   bool
	}{
		{"valid", msg("chat.message"), true},
		{"nil message", nil, false},
		{"no type", canal.Message{"text": "hi"}, false},
		{"non-string type", canal.Message{"type": 3}, false},
		{"empty type", msg(""), false},
		{"private underscore", msg("_secret"), false},
		{"private dot", msg(".secret"), false},
	}
	for _, tt := range tests {
		for op, err := range map[string]error{
			"Send":      m.Send(ctx, "worker", tt.msg),
			"GroupSend": m.GroupSend(ctx, "group", tt.msg),
		} {
			if tt.ok != (err == nil) || (!tt.ok && !errors.Is(err, canal.ErrInvalidMessage)) {
				t.Errorf("%s/%s: err = %v", tt.name, op, err)
			}
		}
	}
}

func TestMemorySendReceiveOrder(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	for _, channel := range []string{"thumbnails", "specific.abc!def"} {
		for i := range 20 {
			mustSend(t, m, channel, msg("n", "i", i))
		}
		for i := range 20 {
			if got := mustRecv(t, m, channel); got["i"] != i {
				t.Fatalf("%s: message %d has i=%v", channel, i, got["i"])
			}
		}
		expectEmpty(t, m, channel, 20*time.Millisecond)
	}
}

func TestMemoryReceiveWaitsForSend(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ch, err := m.NewChannel(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan canal.Message)
	go func() { done <- mustRecvNoFatal(m, ch) }()
	time.Sleep(10 * time.Millisecond) // let the receiver block first
	mustSend(t, m, ch, msg("late"))
	select {
	case got := <-done:
		if got.Type() != "late" {
			t.Fatalf("got %v", got)
		}
	case <-time.After(wait):
		t.Fatal("blocked receiver not woken")
	}
}

func mustRecvNoFatal(m *Memory, channel string) canal.Message {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, _ := m.Receive(ctx, channel)
	return got
}

func TestMemoryNewChannel(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	seen := map[string]bool{}
	for range 100 {
		ch, err := m.NewChannel(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ch, "specific.inmemory!") || ValidChannelName(ch) != nil || seen[ch] {
			t.Fatalf("bad or duplicate name %q", ch)
		}
		seen[ch] = true
	}
	ch, err := m.NewChannel(ctx, "chat.worker")
	if err != nil || !strings.HasPrefix(ch, "chat.worker.inmemory!") {
		t.Fatalf("NewChannel(prefix) = %q, %v", ch, err)
	}
	if len(m.queues) != 0 {
		t.Errorf("NewChannel made %d queues; want them made on first use", len(m.queues))
	}
	mustSend(t, m, ch, msg("hello"))
	if got := mustRecv(t, m, ch); got.Type() != "hello" {
		t.Fatalf("got %v", got)
	}
}

func TestMemoryCapacity(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{
		Capacity: 3,
		ChannelCapacity: []Capacity{
			{Pattern: "http.*", Size: 2},
			{Pattern: "http.request*", Size: 5}, // shadowed: the first match wins
			{Pattern: "big.*", Size: 6},
		},
	})
	tests := []struct {
		channel string
		size    int
	}{
		{"plain", 3},
		{"specific.x!y", 3},
		{"http.request.1", 2},
		{"big.one!local", 6},
	}
	for _, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			for i := range tt.size {
				mustSend(t, m, tt.channel, msg("fill", "i", i))
			}
			err := m.Send(ctx, tt.channel, msg("over"))
			if !errors.Is(err, canal.ErrChannelFull) || !strings.HasPrefix(err.Error(), "layers: ") {
				t.Fatalf("send over capacity %d: err = %v", tt.size, err)
			}
			if got := mustRecv(t, m, tt.channel); got["i"] != 0 {
				t.Fatalf("first message = %v", got)
			}
			mustSend(t, m, tt.channel, msg("room again")) // receiving freed a slot
			if err := m.Send(ctx, tt.channel, msg("over")); !errors.Is(err, canal.ErrChannelFull) {
				t.Fatalf("err = %v; want ErrChannelFull", err)
			}
		})
	}
}

// advance moves m's clock forward by d: every time in the layer is an offset from
// m.start. Only for layers no other goroutine is using.
func advance(m *Memory, d time.Duration) { m.start = m.start.Add(-d) }

func TestMemoryExpiry(t *testing.T) {
	t.Parallel()
	// With advance, expiries are long so that real time passing is negligible.
	const expiry = time.Hour

	t.Run("real clock", func(t *testing.T) {
		t.Parallel()
		const expiry = 50 * time.Millisecond
		m := newMem(t, MemoryOptions{Expiry: expiry})
		mustSend(t, m, "stale", msg("old"))
		time.Sleep(2 * expiry)
		expectEmpty(t, m, "stale", 20*time.Millisecond)
	})
	t.Run("dropped on receive", func(t *testing.T) {
		t.Parallel()
		m := newMem(t, MemoryOptions{Expiry: expiry})
		mustSend(t, m, "stale", msg("old"))
		advance(m, expiry-time.Millisecond)
		mustSend(t, m, "stale", msg("newer"))
		advance(m, time.Millisecond) // "old" is now exactly Expiry old: gone
		if got := mustRecv(t, m, "stale"); got.Type() != "newer" {
			t.Fatalf("got %v; want the expired message skipped", got)
		}
	})
	t.Run("frees capacity on send", func(t *testing.T) {
		t.Parallel()
		m := newMem(t, MemoryOptions{Expiry: expiry, Capacity: 2})
		mustSend(t, m, "full", msg("a"))
		mustSend(t, m, "full", msg("b"))
		if err := m.Send(context.Background(), "full", msg("c")); !errors.Is(err, canal.ErrChannelFull) {
			t.Fatalf("err = %v", err)
		}
		advance(m, expiry)
		mustSend(t, m, "full", msg("d"))
		mustSend(t, m, "full", msg("e"))
		if got := mustRecv(t, m, "full"); got.Type() != "d" {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("idle queues freed", func(t *testing.T) {
		t.Parallel()
		m := newMem(t, MemoryOptions{Expiry: expiry})
		for i := range 50 {
			mustSend(t, m, fmt.Sprintf("abandoned.%d", i), msg("x"))
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		m.Receive(ctx, "never.used") // a cancelled receive must not pin anything
		mustSend(t, m, "kept", msg("x"))
		advance(m, expiry)
		mustSend(t, m, "kept", msg("fresh")) // re-filled: survives the sweep
		mustSend(t, m, "trigger", msg("x"))  // a queue creation sweeps
		if n := len(m.queues); n != 2 {
			t.Fatalf("%d queues after sweep; want 2", n)
		}
		if got := mustRecv(t, m, "kept"); got.Type() != "fresh" {
			t.Fatalf("got %v", got)
		}
	})
}

func TestMemoryGroups(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	a, ra, detach := attach(t, m)
	defer detach()
	b, rb, detachB := attach(t, m)
	defer detachB()
	worker := "chat.archive"

	for _, ch := range []string{a, a, b, worker, worker} { // repeated adds are idempotent
		if err := m.GroupAdd(ctx, "room", ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.GroupSend(ctx, "room", msg("chat.message", "text", "one")); err != nil {
		t.Fatal(err)
	}
	if len(ra.got()) != 1 || len(rb.got()) != 1 {
		t.Fatalf("attached members got %d and %d messages; want 1 each", len(ra.got()), len(rb.got()))
	}
	if got := mustRecv(t, m, worker); got.String("text") != "one" {
		t.Fatalf("worker got %v", got)
	}
	expectEmpty(t, m, worker, 20*time.Millisecond) // once, despite two adds

	if err := m.GroupDiscard(ctx, "room", b); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		m.GroupDiscard(ctx, "room", b),              // already gone
		m.GroupDiscard(ctx, "nosuchgroup", "x"),     // unknown group
		m.GroupSend(ctx, "nosuchgroup", msg("x.y")), // no members: no-op
	} {
		if err != nil {
			t.Fatalf("want silent no-op, got %v", err)
		}
	}
	m.GroupSend(ctx, "room", msg("chat.message", "text", "two"))
	if len(ra.got()) != 2 || len(rb.got()) != 1 {
		t.Fatalf("after discard: a got %d, b got %d", len(ra.got()), len(rb.got()))
	}
	mustRecv(t, m, worker)

	// Discarding everyone frees the group.
	m.GroupDiscard(ctx, "room", a)
	m.GroupDiscard(ctx, "room", worker)
	m.gmu.RLock()
	_, exists := m.groups["room"]
	m.gmu.RUnlock()
	if exists {
		t.Error("empty group not freed")
	}
}

func TestMemoryGroupDiscardKeepsIndex(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	var names []string
	recs := map[string]*recorder{}
	for range 20 {
		name, r, _ := attach(t, m)
		names = append(names, name)
		recs[name] = r
		m.GroupAdd(ctx, "g", name)
	}
	// Remove in a scrambled order; swap-removal must keep the index right.
	removed := map[string]bool{}
	for _, i := range rand.Perm(20)[:12] {
		m.GroupDiscard(ctx, "g", names[i])
		removed[names[i]] = true
	}
	m.GroupSend(ctx, "g", msg("ping"))
	for _, name := range names {
		if n := len(recs[name].got()); n != map[bool]int{true: 0, false: 1}[removed[name]] {
			t.Errorf("%s (removed %v) got %d", name, removed[name], n)
		}
	}
}

func TestMemoryGroupExpiry(t *testing.T) {
	t.Parallel()
	const expiry = time.Hour // with advance: real time passing is negligible
	m := newMem(t, MemoryOptions{GroupExpiry: expiry})
	ctx := context.Background()
	old, rOld, _ := attach(t, m)
	refreshed, rRefreshed, _ := attach(t, m)
	m.GroupAdd(ctx, "g", old)
	m.GroupAdd(ctx, "g", refreshed)
	m.GroupAdd(ctx, "g", "queued.old")
	advance(m, expiry/2)
	m.GroupAdd(ctx, "g", refreshed) // refreshes its join time
	advance(m, expiry/2)            // old members are now exactly GroupExpiry old
	fresh, rFresh, _ := attach(t, m)
	m.GroupAdd(ctx, "g", fresh)

	m.GroupSend(ctx, "g", msg("ping"))
	if len(rOld.got()) != 0 {
		t.Error("expired member got the message")
	}
	if len(rRefreshed.got()) != 1 || len(rFresh.got()) != 1 {
		t.Errorf("live members got %d and %d; want 1 each", len(rRefreshed.got()), len(rFresh.got()))
	}
	expectEmpty(t, m, "queued.old", 20*time.Millisecond)
	g := m.groups["g"]
	if len(g.members) != 2 || len(g.index) != 2 {
		t.Errorf("after pruning: %d members, %d indexed; want 2", len(g.members), len(g.index))
	}
	m.GroupSend(ctx, "g", msg("again")) // index still consistent
	if len(rRefreshed.got()) != 2 || len(rFresh.got()) != 2 {
		t.Error("members lost after pruning")
	}
	advance(m, expiry)
	m.GroupSend(ctx, "g", msg("late"))
	if len(m.groups) != 0 {
		t.Error("fully expired group not freed")
	}
}

func TestMemoryGroupSweep(t *testing.T) {
	t.Parallel()
	const expiry = time.Hour
	m := newMem(t, MemoryOptions{GroupExpiry: expiry})
	ctx := context.Background()
	for i := range 20 {
		m.GroupAdd(ctx, fmt.Sprintf("forgotten.%d", i), "w")
	}
	m.GroupAdd(ctx, "kept", "w")
	advance(m, expiry)
	m.GroupAdd(ctx, "kept", "w") // refreshed: survives
	m.GroupAdd(ctx, "new", "w")  // a new group triggers the sweep
	if n := len(m.groups); n != 2 {
		t.Fatalf("%d groups after the sweep; want 2", n)
	}
}

func TestMemoryDetachedMembersPruned(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	a, ra, detachA := attach(t, m)
	b, rb, _ := attach(t, m)
	m.GroupAdd(ctx, "g", a)
	m.GroupAdd(ctx, "g", b)
	m.GroupAdd(ctx, "g", "w")
	detachA() // forgets to GroupDiscard, as a crashed consumer would
	m.GroupSend(ctx, "g", msg("x"))
	if len(ra.got()) != 0 || len(rb.got()) != 1 {
		t.Fatalf("a got %d, b got %d", len(ra.got()), len(rb.got()))
	}
	mustRecv(t, m, "w")
	m.gmu.RLock()
	g := m.groups["g"]
	_, aIn := g.index[a]
	n := len(g.members)
	m.gmu.RUnlock()
	if aIn || n != 2 {
		t.Fatalf("detached member still in the group (%d members)", n)
	}
	m.GroupSend(ctx, "g", msg("y"))
	if len(rb.got()) != 2 {
		t.Fatal("index broken by pruning")
	}
}

func TestMemoryGroupSendSkipsFull(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{Capacity: 1})
	ctx := context.Background()
	fullAttached, rFull, _ := attach(t, m)
	rFull.full.Store(true)
	okAttached, rOK, _ := attach(t, m)
	mustSend(t, m, "queue.full", msg("prefill"))
	for _, ch := range []string{fullAttached, "queue.full", okAttached, "queue.empty"} {
		m.GroupAdd(ctx, "g", ch)
	}
	if err := m.GroupSend(ctx, "g", msg("news")); err != nil {
		t.Fatalf("GroupSend with full members: %v", err)
	}
	if len(rOK.got()) != 1 {
		t.Error("attached member after a full one missed the message")
	}
	if got := mustRecv(t, m, "queue.empty"); got.Type() != "news" {
		t.Errorf("queued member got %v", got)
	}
	if got := mustRecv(t, m, "queue.full"); got.Type() != "prefill" {
		t.Errorf("full member got %v", got)
	}
	expectEmpty(t, m, "queue.full", 20*time.Millisecond)
	// Direct Send to a full attached channel does report it.
	if err := m.Send(ctx, fullAttached, msg("direct")); !errors.Is(err, canal.ErrChannelFull) {
		t.Errorf("Send to full attached channel: %v", err)
	}
}

func TestMemoryGroupSendSharesMessage(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	var recs []*recorder
	for range 3 {
		ch, r, _ := attach(t, m)
		recs = append(recs, r)
		m.GroupAdd(ctx, "g", ch)
	}
	m.GroupAdd(ctx, "g", "queued")
	sent := msg("shared")
	m.GroupSend(ctx, "g", sent)
	// One copy for all members (the encode-once fan-out relies on it), not the sender's.
	first := recs[0].got()
	if len(first) != 1 {
		t.Fatalf("member 0 got %d messages", len(first))
	}
	ptr := reflect.ValueOf(first[0]).UnsafePointer()
	if ptr == reflect.ValueOf(sent).UnsafePointer() {
		t.Error("members got the sender's map, not a copy")
	}
	for i, r := range recs {
		if got := r.got(); len(got) != 1 || reflect.ValueOf(got[0]).UnsafePointer() != ptr {
			t.Errorf("member %d did not get the same Message value as member 0", i)
		}
	}
	if got := mustRecv(t, m, "queued"); reflect.ValueOf(got).UnsafePointer() != ptr {
		t.Error("queued member got a copy of its own")
	}
}

// TestMemoryCopiesMessage: what a receiver gets does not change when the sender
// changes its message after Send or GroupSend, at any depth, as with Channels'
// deepcopy and with a Redis layer.
func TestMemoryCopiesMessage(t *testing.T) {
	t.Parallel()
	type nested struct{ N int }
	tests := []struct {
		name   string
		value  func() any
		mutate func(v any)
	}{
		{"map[string]any", func() any { return map[string]any{"a": 1} }, func(v any) { v.(map[string]any)["a"] = 2 }},
		{"canal.Message", func() any { return canal.Message{"a": 1} }, func(v any) { v.(canal.Message)["b"] = 2 }},
		{"[]any", func() any { return []any{"x", int64(1)} }, func(v any) { v.([]any)[0] = "y" }},
		{"[]byte", func() any { return []byte("abc") }, func(v any) { v.([]byte)[0] = 'z' }},
		{"[]string", func() any { return []string{"a", "b"} }, func(v any) { v.([]string)[1] = "c" }},
		{"map[string]string", func() any { return map[string]string{"k": "v"} }, func(v any) { v.(map[string]string)["k"] = "w" }},
		{"[]int (reflect)", func() any { return []int{1, 2} }, func(v any) { v.([]int)[0] = 9 }},
		{"deep: map in slice in map", func() any { return map[string]any{"l": []any{map[string]any{"k": "v"}}} },
			func(v any) { v.(map[string]any)["l"].([]any)[0].(map[string]any)["k"] = "changed" }},
		{"typed nested: map[string][]map[string]int", func() any { return map[string][]map[string]int{"l": {{"k": 1}}} },
			func(v any) { v.(map[string][]map[string]int)["l"][0]["k"] = 2 }},
		{"nil element of a typed slice", func() any { return []any{nil, []byte("x")} }, func(v any) { v.([]any)[1].([]byte)[0] = 'y' }},
		{"struct pointer is shared, its map key is not", func() any { return map[string]any{"p": &nested{1}, "m": map[string]any{}} },
			func(v any) { v.(map[string]any)["m"].(map[string]any)["new"] = true }},
	}
	for _, tt := range tests {
		for _, op := range []string{"send attached", "send queued", "group send"} {
			t.Run(tt.name+"/"+op, func(t *testing.T) {
				t.Parallel()
				m := newMem(t, MemoryOptions{})
				ctx := context.Background()
				want := msg("x", "v", tt.value())
				sent := msg("x", "v", tt.value())
				var got func() canal.Message
				switch op {
				case "send attached", "group send":
					ch, r, _ := attach(t, m)
					got = func() canal.Message { return r.got()[0] }
					if op == "group send" {
						m.GroupAdd(ctx, "g", ch)
						if err := m.GroupSend(ctx, "g", sent); err != nil {
							t.Fatal(err)
						}
					} else {
						mustSend(t, m, ch, sent)
					}
				case "send queued":
					mustSend(t, m, "worker", sent)
					got = func() canal.Message { return mustRecv(t, m, "worker") }
				}
				tt.mutate(sent["v"])
				sent["type"] = "changed"
				if g := got(); !reflect.DeepEqual(g, want) {
					t.Fatalf("receiver got %#v; want %#v as sent", g, want)
				}
			})
		}
	}
}

func TestMemoryCopySelfReference(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	done := make(chan error, 1)
	go func() { done <- m.Send(context.Background(), "worker", msg("x", "v", cyclic)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Send of a self-referencing map did not return")
	}
}

func TestMemoryAttach(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	var got canal.Message
	name, detach, err := m.Attach(ctx, "ws", func(msg canal.Message) bool {
		got = msg // unsynchronised on purpose: deliver runs on the sender's goroutine
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "ws.inmemory!") || ValidChannelName(name) != nil {
		t.Fatalf("bad name %q", name)
	}
	mustSend(t, m, name, msg("direct"))
	if got.Type() != "direct" {
		t.Fatalf("deliver not called synchronously: %v", got)
	}
	if _, err := m.Receive(ctx, name); !errors.Is(err, canal.ErrInvalidName) {
		t.Errorf("Receive on an attached channel: %v", err)
	}
	m.GroupAdd(ctx, "g", name)

	detach()
	detach() // idempotent
	got = nil
	if err := m.Send(ctx, name, msg("after")); err != nil {
		t.Errorf("Send after detach: %v; want a silent drop", err)
	}
	if err := m.GroupSend(ctx, "g", msg("after")); err != nil {
		t.Error(err)
	}
	if err := m.GroupAdd(ctx, "g2", name); err != nil { // joining after detach: nothing
		t.Error(err)
	}
	m.GroupSend(ctx, "g2", msg("after"))
	m.gmu.RLock()
	ng := len(m.groups)
	m.gmu.RUnlock()
	if ng != 0 {
		t.Errorf("%d groups left; want the detached member pruned and g2 never made", ng)
	}
	for range 1000 {
		m.Send(ctx, name, msg("flood"))
	}
	if got != nil {
		t.Errorf("deliver called after detach: %v", got)
	}
	m.mu.RLock()
	nq, nl := len(m.queues), len(m.listeners)
	m.mu.RUnlock()
	if nq != 0 || nl != 0 {
		t.Errorf("detached channel holds %d queues, %d listeners; want none", nq, nl)
	}
	if _, err := m.Receive(ctx, name); !errors.Is(err, canal.ErrInvalidName) {
		t.Errorf("Receive on a detached channel: %v", err)
	}

	// Another layer's Attach names are ordinary names here.
	other := newMem(t, MemoryOptions{})
	foreign, _, _ := other.Attach(ctx, "", func(canal.Message) bool { return true })
	mustSend(t, m, foreign, msg("x"))
	mustRecv(t, m, foreign)
}

// TestMemoryReentrantDeliver checks that deliver may call back into the layer, even
// into the lock-taking paths, without deadlocking.
func TestMemoryReentrantDeliver(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	var name string
	var detach func()
	var calls atomic.Int32
	name, detach, err := m.Attach(ctx, "", func(msg canal.Message) bool {
		calls.Add(1)
		if msg.Type() == "nested" {
			return true
		}
		if err := m.GroupDiscard(ctx, "g", name); err != nil {
			t.Error(err)
		}
		m.GroupAdd(ctx, "other", name)
		m.GroupSend(ctx, "other", canal.Message{"type": "nested"}) // delivers to this very func
		m.Send(ctx, "log", msg)
		m.Flush(ctx)
		detach()
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	m.GroupAdd(ctx, "g", name)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.GroupSend(ctx, "g", msg("go"))
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("GroupSend deadlocked with a re-entrant deliver")
	}
	if calls.Load() != 2 { // the group message, then the nested one before detach
		t.Errorf("deliver called %d times; want 2", calls.Load())
	}
}

func TestMemoryReceiveContext(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := m.Receive(ctx, "idle")
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond)
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Receive ignored cancellation")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		expectEmpty(t, m, "idle2", 20*time.Millisecond)
	})
	t.Run("already done", func(t *testing.T) {
		t.Parallel()
		mustSend(t, m, "ready", msg("x"))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := m.Receive(ctx, "ready"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if err := m.Send(ctx, "ready", msg("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Send with a done ctx: %v", err)
		}
		mustRecv(t, m, "ready") // the message was left for the next receiver
	})
}

// TestMemoryCancelledWaiterPassesMessage covers a receiver woken for a message just
// as its ctx is cancelled: the message must reach another waiting receiver.
func TestMemoryCancelledWaiterPassesMessage(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	q := m.acquire("c")
	defer m.release(q)
	// Register two waiters by hand, as Receive would.
	first, second := make(chan struct{}, 1), make(chan struct{}, 1)
	q.mu.Lock()
	q.waiters = append(q.waiters, first, second)
	q.mu.Unlock()
	mustSend(t, m, "c", msg("x")) // wakes first
	q.cancelWait(first)           // …which gives up instead of receiving
	if len(second) != 1 {
		t.Fatal("token not passed to the next waiter")
	}
	q.cancelWait(second) // woken and cancelled with no one left: nothing to do
	if got := mustRecv(t, m, "c"); got.Type() != "x" {
		t.Fatal(got)
	}
}

func TestMemoryFlush(t *testing.T) {
	t.Parallel()
	m := newMem(t, MemoryOptions{})
	ctx := context.Background()
	a, ra, _ := attach(t, m)
	m.GroupAdd(ctx, "g", a)
	m.GroupAdd(ctx, "g", "w")
	mustSend(t, m, "w", msg("before"))

	// A receiver blocked across Flush must still get later messages.
	got := make(chan canal.Message, 1)
	go func() { got <- mustRecvNoFatal(m, "blocked") }()
	time.Sleep(10 * time.Millisecond)

	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	expectEmpty(t, m, "w", 20*time.Millisecond)
	m.GroupSend(ctx, "g", msg("after"))
	if len(ra.got()) != 0 {
		t.Error("group survived Flush")
	}
	mustSend(t, m, a, msg("direct")) // still attached
	if len(ra.got()) != 1 {
		t.Error("listener lost by Flush")
	}
	mustSend(t, m, "blocked", msg("wake"))
	select {
	case msg := <-got:
		if msg.Type() != "wake" {
			t.Fatalf("got %v", msg)
		}
	case <-time.After(wait):
		t.Fatal("receiver stranded by Flush")
	}
}

func TestMemoryClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	m, err := NewMemory(MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, ra, detach := attach(t, m)
	m.GroupAdd(ctx, "g", a)

	const receivers = 3
	errc := make(chan error, receivers)
	for i := range receivers {
		go func() {
			_, err := m.Receive(ctx, []string{"x", "x", "y"}[i])
			errc <- err
		}()
	}
	time.Sleep(10 * time.Millisecond)
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	expectWoken(t, errc, receivers)
	expectClosed(t, m, a)
	if len(ra.got()) != 0 {
		t.Error("deliver called after Close")
	}
	if err := m.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	detach() // harmless after Close
}

// TestMemoryConcurrentSendReceive runs senders and receivers on one small channel:
// every message must be received exactly once, including by receivers that keep
// timing out and retrying (the cancelWait path).
func TestMemoryConcurrentSendReceive(t *testing.T) {
	defer goleak.VerifyNone(t)
	m, err := NewMemory(MemoryOptions{Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	const senders, perSender, receivers = 4, 500, 4
	total := senders * perSender
	var (
		mu   sync.Mutex
		seen = make(map[int]int, total)
		left atomic.Int64
	)
	left.Store(int64(total))
	all, cancelAll := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelAll()

	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				for {
					err := m.Send(all, "work", msg("job", "n", s*perSender+i))
					if err == nil {
						break
					}
					if !errors.Is(err, canal.ErrChannelFull) {
						t.Error(err)
						return
					}
					time.Sleep(50 * time.Microsecond) // back off while receivers drain
				}
			}
		})
	}
	for r := range receivers {
		wg.Go(func() {
			for left.Load() > 0 {
				ctx, cancel := all, context.CancelFunc(func() {})
				if r%2 == 1 { // half the receivers give up often
					ctx, cancel = context.WithTimeout(all, time.Duration(rand.IntN(300))*time.Microsecond)
				}
				got, err := m.Receive(ctx, "work")
				cancel()
				if err != nil {
					if all.Err() != nil {
						return
					}
					continue
				}
				mu.Lock()
				seen[got["n"].(int)]++
				mu.Unlock()
				if left.Add(-1) == 0 {
					cancelAll() // release the receivers still waiting
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("received %d distinct messages of %d", len(seen), total)
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("message %d received %d times", n, c)
		}
	}
}

// TestMemoryConcurrentGroups churns connections through groups while messages fan
// out, for the race detector.
func TestMemoryConcurrentGroups(t *testing.T) {
	defer goleak.VerifyNone(t)
	m, err := NewMemory(MemoryOptions{Capacity: 4, Expiry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()
	var delivered atomic.Int64
	deliver := func(canal.Message) bool { delivered.Add(1); return true }
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				name, detach, err := m.Attach(ctx, "", deliver)
				if err != nil {
					t.Error(err)
					return
				}
				group := fmt.Sprintf("g%d", i%3)
				m.GroupAdd(ctx, group, name)
				m.GroupAdd(ctx, group, fmt.Sprintf("q%d.%d", w, i%5))
				m.GroupSend(ctx, group, msg("tick"))
				m.Send(ctx, name, msg("direct"))
				if i%2 == 0 {
					m.GroupDiscard(ctx, group, name)
				}
				detach()
				if i%50 == 0 {
					m.Flush(ctx)
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for i := range 300 {
				m.GroupSend(ctx, fmt.Sprintf("g%d", i%3), msg("fanout"))
				rctx, cancel := context.WithTimeout(ctx, 100*time.Microsecond)
				m.Receive(rctx, fmt.Sprintf("q%d.%d", i%4, i%5))
				cancel()
			}
		})
	}
	wg.Wait()
	if delivered.Load() == 0 {
		t.Error("nothing delivered")
	}
}

// benchLayer makes a layer whose group "room" has members attached channels, each
// counting its messages in counts. deliver does no synchronisation, so only one
// goroutine may send (the parallel benchmark uses its own deliver).
func benchLayer(b *testing.B, members int, deliver func(i int) func(canal.Message) bool) *Memory {
	m, err := NewMemory(MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	ctx := context.Background()
	for i := range members {
		name, _, err := m.Attach(ctx, "", deliver(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := m.GroupAdd(ctx, "room", name); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// counters returns per-member counting deliver funcs: the cheapest deliver, so the
// benchmark measures the layer.
func counters(counts []int) func(i int) func(canal.Message) bool {
	return func(i int) func(canal.Message) bool {
		return func(canal.Message) bool { counts[i]++; return true }
	}
}

func BenchmarkMemoryGroupSend(b *testing.B) {
	for _, members := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			counts := make([]int, members)
			m := benchLayer(b, members, counters(counts))
			ctx := context.Background()
			message := msg("chat.message", "text", "hello")
			b.ReportAllocs()
			for b.Loop() {
				if err := m.GroupSend(ctx, "room", message); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			for i, c := range counts {
				if c != counts[0] || c == 0 {
					b.Fatalf("member %d got %d messages, member 0 got %d", i, c, counts[0])
				}
			}
		})
	}
}

func BenchmarkMemoryGroupSendParallel(b *testing.B) {
	var n atomic.Int64
	m := benchLayer(b, 1000, func(int) func(canal.Message) bool {
		return func(canal.Message) bool { n.Add(1); return true }
	})
	ctx := context.Background()
	message := msg("chat.message", "text", "hello")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.GroupSend(ctx, "room", message)
		}
	})
}

func BenchmarkMemorySend(b *testing.B) {
	ctx := context.Background()
	message := msg("chat.message", "text", "hello")
	b.Run("attached", func(b *testing.B) {
		m := benchLayer(b, 1, counters(make([]int, 1)))
		var name string
		for n := range m.listeners {
			name = n
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Send(ctx, name, message); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("queue", func(b *testing.B) {
		m := benchLayer(b, 0, nil)
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Send(ctx, "worker", message); err != nil {
				b.Fatal(err)
			}
			if _, err := m.Receive(ctx, "worker"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
