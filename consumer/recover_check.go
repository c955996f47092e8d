package consumer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal"
)

// The position check (Options.RecoverCheck). A live message of a recovered group that
// is lost on the way (the process's channel full in Redis, a multi-host publish cut
// short, a delivery the receive loop dropped) shows as a gap only when the group's
// next message arrives, which may be never: a client could sit without the last
// message of a quiet group for good. So, every RecoverCheck, a Handler compares each
// recovered group's current position in its history with the last position each of
// its connections in that group got, and a connection behind it catches up exactly
// as after a gap: a catch-up event on its session's goroutine, in order with its
// other events, closed with 1013 when its queue cannot take even that.
//
// The cost does not grow with the connections: one goroutine per Handler (none while
// it has no live recovered connection: it stops with the last one and starts again
// with the next), and one History read of the current position per group per round,
// shared by all of the Handler's connections in that group. A round reads at most
// MaxRecoverCheckGroups groups, in name order from where the last round stopped, and
// takes at most RecoverCheck; the other groups wait for the next rounds. Only the
// catch-ups it starts read more, once per connection that really is behind.
//
// A message published just before the read may still be on its way to a connection:
// a connection found behind is given min(RecoverCheck/4, 1s) for its live copy to
// arrive before it is caught up, so that a busy group does not cost every connection
// a catch-up per round. A lost message therefore reaches its client at most about
// RecoverCheck plus that grace after it was published (one round per
// ceil(groups/MaxRecoverCheckGroups) with more groups).
//
// A read that fails (Redis down) is counted in Stats.RecoverCheckErrors, logged at
// most once a second, and tried again at the next round; it closes nothing.
const (
	// DefaultRecoverCheck is Options.RecoverCheck's default.
	DefaultRecoverCheck = 30 * time.Second
	// MinRecoverCheck is the shortest Options.RecoverCheck New accepts: the check is
	// a safety net for lost messages, not a delivery path, and each round costs
	// Redis one read per group.
	MinRecoverCheck = time.Second
	// MaxRecoverCheckGroups bounds the groups one round of the check reads.
	MaxRecoverCheckGroups = 1000
	// recoverCheckGrace caps the time a connection found behind is given for a live
	// copy in flight.
	recoverCheckGrace = time.Second
)

// minRecoverCheck is MinRecoverCheck, which tests lower to keep short.
var minRecoverCheck atomic.Int64

func init() { minRecoverCheck.Store(int64(MinRecoverCheck)) }

// recoverInterval checks Options.RecoverCheck: the interval of the check, or 0 when
// it is off.
func recoverInterval(d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, nil
	case d == 0:
		return DefaultRecoverCheck, nil
	case d < time.Duration(minRecoverCheck.Load()):
		return 0, fmt.Errorf("consumer: RecoverCheck %v is shorter than %v", d, time.Duration(minRecoverCheck.Load()))
	}
	return d, nil
}

// recoverChecker is a Handler's position check: the recovered groups of its live
// connections and the goroutine that checks them.
type recoverChecker struct {
	layer canal.HistoryLayer
	every time.Duration
	grace time.Duration
	drops *drops // the Handler's counters (setDrops)

	mu     sync.Mutex
	groups map[string]map[*recovery]*recoveries // the members of each group
	n      int                                  // recoveries in groups
	cursor string                               // the last group a round read
	stop   context.CancelFunc                   // stops the goroutine; nil when none runs
}

func newRecoverChecker(l canal.HistoryLayer, every time.Duration) *recoverChecker {
	return &recoverChecker{layer: l, every: every, grace: min(every/4, recoverCheckGrace),
		groups: make(map[string]map[*recovery]*recoveries)}
}

// setDrops gives the check the Handler's counters; New calls it before any
// connection exists. Nil-safe.
func (rr *recoverRules) setDrops(d *drops) {
	if rr != nil && rr.check != nil {
		rr.check.drops = d
	}
}

// add checks r, a recovered group of rs that has caught up once, until it leaves the
// group (remove) or its connection ends. It starts the goroutine if none runs.
func (k *recoverChecker) add(rs *recoveries, r *recovery) {
	if k == nil {
		return
	}
	k.mu.Lock()
	m := k.groups[r.group]
	if m == nil {
		m = make(map[*recovery]*recoveries)
		k.groups[r.group] = m
	}
	if _, dup := m[r]; dup {
		k.mu.Unlock()
		return
	}
	m[r] = rs
	k.n++
	if k.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		k.stop = cancel
		go k.run(ctx)
	}
	k.mu.Unlock()
	// The connection's context ends after its Disconnect: no socket keeps the
	// goroutine alive past its own end. (No goroutine waits on it: the server's is a
	// cancelable context.)
	r.unwatch = context.AfterFunc(rs.raw.Context(), func() { k.remove(r) })
}

// remove stops checking r, and stops the goroutine with the last recovery. Nil-safe,
// and a no-op when r is not checked.
func (k *recoverChecker) remove(r *recovery) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.groups[r.group]
	if _, ok := m[r]; !ok {
		return
	}
	delete(m, r)
	if len(m) == 0 {
		delete(k.groups, r.group)
	}
	k.n--
	if k.n == 0 && k.stop != nil {
		k.stop()
		k.stop = nil
	}
}

// run checks every k.every until ctx ends.
func (k *recoverChecker) run(ctx context.Context) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.round(ctx)
	}
}

// member is one connection's recovery of a group.
type member struct {
	r  *recovery
	rs *recoveries
}

// suspect is a member found behind head.
type suspect struct {
	member
	head canal.Position
}

// round reads the current position of the groups pick returns and catches up the
// connections behind it.
func (k *recoverChecker) round(ctx context.Context) {
	groups := k.pick()
	rctx, cancel := context.WithTimeout(ctx, k.every)
	defer cancel()
	var suspects []suspect
	var ms []member
	for _, g := range groups {
		_, head, err := k.layer.History(rctx, g, canal.Position{}, 0) // the position only
		if ctx.Err() != nil {
			return // stopped: the last connection ended
		}
		k.mu.Lock()
		k.cursor = g
		k.mu.Unlock()
		if err != nil {
			k.drops.recoverCheckFailed(g, err)
			if rctx.Err() != nil {
				break // the round's time is up: the rest at the next
			}
			continue
		}
		ms = k.members(g, ms[:0])
		for _, m := range ms {
			if m.r.behind(head) {
				suspects = append(suspects, suspect{m, head})
			}
		}
	}
	if len(suspects) == 0 {
		return
	}
	t := time.NewTimer(k.grace) // for live copies still on their way
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-t.C:
	}
	for _, s := range suspects {
		if s.r.behind(s.head) && k.checks(s.r) {
			k.drops.recoverCheckCatchups.Add(1)
			s.rs.kick(s.r)
		}
	}
}

// pick returns the groups of this round: all of them, or MaxRecoverCheckGroups in
// name order after the last one read, wrapping around.
func (k *recoverChecker) pick() []string {
	k.mu.Lock()
	names := make([]string, 0, len(k.groups))
	for g := range k.groups {
		names = append(names, g)
	}
	cursor := k.cursor
	k.mu.Unlock()
	slices.Sort(names)
	if len(names) <= MaxRecoverCheckGroups {
		return names
	}
	i, found := slices.BinarySearch(names, cursor)
	if found {
		i++
	}
	out := make([]string, 0, MaxRecoverCheckGroups)
	for j := range MaxRecoverCheckGroups {
		out = append(out, names[(i+j)%len(names)])
	}
	return out
}

// members appends group's members to dst.
func (k *recoverChecker) members(group string, dst []member) []member {
	k.mu.Lock()
	defer k.mu.Unlock()
	for r, rs := range k.groups[group] {
		dst = append(dst, member{r, rs})
	}
	return dst
}

// checks reports whether r is still checked (its connection still in the group).
func (k *recoverChecker) checks(r *recovery) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.groups[r.group][r]
	return ok
}

// behind reports whether r's connection has not got its group's messages up to head
// (or has them from another epoch: the history was lost), and no catch-up of r is
// queued or running, which would see to it anyway.
func (r *recovery) behind(head canal.Position) bool {
	if head.Epoch == "" || r.pending.Load() {
		return false
	}
	r.mu.Lock()
	busy := r.catching
	r.mu.Unlock()
	if busy {
		return false
	}
	p := r.rec.Position() // takes rec's lock: not under r.mu (emit's order)
	return p.Epoch != head.Epoch || p.Offset < head.Offset
}
