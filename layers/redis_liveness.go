package layers

import (
	"context"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// DefaultLiveness is RedisOptions.Liveness' default.
const DefaultLiveness = 30 * time.Second

// minLiveness is the shortest Liveness accepted: the key is refreshed every third of it.
const minLiveness = 300 * time.Millisecond

const (
	// maxPIDGroups bounds the groups remembered per suspected process, to prune once
	// it is dead; groups beyond are pruned by the GroupSends that meet its members.
	maxPIDGroups = 1024
	// livenessSweepBatch is how many own groups one pipelined round of the janitor reads.
	livenessSweepBatch = 128
	// livenessDelTimeout bounds Close's deletion of the liveness key.
	livenessDelTimeout = 500 * time.Millisecond
)

// Process ids. A Go layer's process id is 16 random hex digits followed by the 16 hex
// digits of a fixed FNV-1a hash of them, so that any Go process can tell a Go
// process's channel names ("<prefix>.<process id>!<local>") from Django's, whose
// process ids are uuid4().hex (one in 2^64 would pass the check), without asking
// Redis. Both are 32 lowercase hex digits: the names stay valid for Django.

// pidTag hashes a process id's random half.
func pidTag(random string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, s := range [2]string{"canal.pid:", random} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= prime
		}
	}
	return h
}

// newProcessID returns a fresh Go process id.
func newProcessID() string {
	random := randomHex(8)
	return random + tagHex(pidTag(random))
}

// isGoProcessID reports whether pid is 32 lowercase hex digits whose second half is
// the tag of the first.
func isGoProcessID(pid string) bool { return isTagged(pid, pidTag) }

// goProcessID returns the Go process id in a process-local channel name
// "<prefix>.<process id>!<local>", or "" when the name is not a Go process's.
func goProcessID(channel string) string {
	i := strings.IndexByte(channel, '!')
	if i < 34 || channel[i-33] != '.' {
		return ""
	}
	if pid := channel[i-32 : i]; isGoProcessID(pid) {
		return pid
	}
	return ""
}

// liveness keeps this process's liveness key and judges other Go processes by theirs.
//
// A process is judged dead only when its key is missing at two checks at least one
// and a half of its refresh periods apart: a live process sets its key again within
// one period, so a key lost to a flush or a Redis restart never condemns a live
// process's members.
type liveness struct {
	r          *Redis
	ttl        time.Duration
	period     time.Duration // refresh period: ttl/3
	cacheFor   time.Duration // how long a verdict on another process is reused
	sweepEvery time.Duration // how often the groups this process joined are scanned
	value      string        // the key's value: the refresh period in milliseconds

	active     atomic.Bool // this process has channels: keep its key
	expectGone atomic.Bool // our own Flush deleted the key: not a lapse
	lapses     atomic.Uint64
	wake       chan struct{}

	// Only the keeper goroutine touches these.
	lastRefresh time.Time
	refreshed   bool
	failing     bool
	lastSweep   time.Time

	mu        sync.Mutex
	pids      map[string]*pidState
	due       map[string]struct{}  // to check at the next run
	ownGroups map[string]time.Time // groups this process's channels joined → last join
}

// pidState is what this process knows about another Go process's liveness.
type pidState struct {
	checked      time.Time     // last check; zero = never
	missingSince time.Time     // first check that found no key since it was last seen
	period       time.Duration // its refresh period, read from its key; 0 = unknown
	dead         bool
	asked        time.Time           // last time its members were met
	groups       map[string]struct{} // groups its members were met in, to prune
}

func newLiveness(r *Redis, ttl time.Duration) *liveness {
	period := ttl / 3
	return &liveness{
		r:          r,
		ttl:        ttl,
		period:     period,
		cacheFor:   period / 2,
		sweepEvery: 2 * ttl,
		value:      strconv.FormatInt(period.Milliseconds(), 10),
		wake:       make(chan struct{}, 1),
		pids:       make(map[string]*pidState),
		due:        make(map[string]struct{}),
		ownGroups:  make(map[string]time.Time),
	}
}

func (lv *liveness) key(pid string) string { return lv.r.prefix + ":canal:alive:" + pid }

func (lv *liveness) host(pid string) *redisHost {
	return lv.r.hosts[shardIndex(pid, len(lv.r.hosts))]
}

func (lv *liveness) poke() {
	select {
	case lv.wake <- struct{}{}:
	default:
	}
}

// activate starts keeping the key, at once.
func (lv *liveness) activate() {
	if lv.active.CompareAndSwap(false, true) {
		lv.poke()
	}
}

// joined records that one of this process's channels joined group.
func (lv *liveness) joined(group string) {
	now := time.Now()
	lv.mu.Lock()
	lv.ownGroups[group] = now
	lv.mu.Unlock()
}

// flushing forgets the groups, which Flush is about to delete, and warns the next
// refresh that the key is gone on purpose.
func (lv *liveness) flushing() {
	lv.expectGone.Store(true)
	lv.mu.Lock()
	clear(lv.ownGroups)
	for _, st := range lv.pids {
		clear(st.groups)
	}
	lv.mu.Unlock()
}

// remove deletes the key (Close), best effort and bounded.
func (lv *liveness) remove(context.Context) {
	if !lv.active.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), livenessDelTimeout)
	defer cancel()
	c := lv.host(lv.r.pid).client
	c.Do(ctx, c.B().Del().Key(lv.key(lv.r.pid)).Build())
}

// deadAfter is how long a process's key must stay missing for it to be dead.
func (lv *liveness) deadAfter(st *pidState) time.Duration {
	p := st.period
	if p <= 0 {
		p = lv.period // never seen: judged with this process's own setting
	}
	return p * 3 / 2
}

// verdicts returns, for the Go processes other than this one that own members
// (channel names), whether each is dead, and whether any is. It schedules checks for
// the processes whose verdict is older than cacheFor and remembers group for pruning;
// it never does I/O. It returns nil when no member belongs to another Go process.
func (lv *liveness) verdicts(group string, members []string) (map[string]bool, bool) {
	var out map[string]bool
	last := ""
	for _, ch := range members {
		i := strings.IndexByte(ch, '!')
		if i < 34 || ch[i-33] != '.' {
			continue
		}
		pid := ch[i-32 : i]
		if pid == last || pid == lv.r.pid { // members of one process often follow each other
			continue
		}
		if _, seen := out[pid]; seen || !isGoProcessID(pid) {
			continue
		}
		if out == nil {
			out = make(map[string]bool)
		}
		out[pid] = false
		last = pid
	}
	if out == nil {
		return nil, false
	}
	anyDead := false
	now := time.Now()
	schedule := false
	lv.mu.Lock()
	for pid := range out {
		st := lv.pids[pid]
		if st == nil {
			st = &pidState{groups: make(map[string]struct{})}
			lv.pids[pid] = st
		}
		st.asked = now
		out[pid] = st.dead
		anyDead = anyDead || st.dead
		if len(st.groups) < maxPIDGroups {
			st.groups[group] = struct{}{}
		}
		if st.checked.IsZero() || now.Sub(st.checked) >= lv.cacheFor {
			if _, ok := lv.due[pid]; !ok {
				lv.due[pid] = struct{}{}
				schedule = true
			}
		}
	}
	lv.mu.Unlock()
	if schedule {
		lv.poke()
	}
	return out, anyDead
}

// run is the keeper goroutine: it refreshes this process's key, scans the groups this
// process joined for members of dead processes, and checks other processes' keys.
func (lv *liveness) run() {
	defer lv.r.wg.Done()
	tick := time.NewTicker(lv.period / 2)
	defer tick.Stop()
	for {
		select {
		case <-lv.r.ctx.Done():
			return
		case <-tick.C:
		case <-lv.wake:
		}
		now := time.Now()
		lv.refresh(now)
		lv.sweep(now)
		lv.check(now)
	}
}

// refresh sets the key again once a period has passed since the last success.
func (lv *liveness) refresh(now time.Time) {
	if !lv.active.Load() || (lv.refreshed && now.Sub(lv.lastRefresh) < lv.period) {
		return
	}
	key := lv.key(lv.r.pid)
	c := lv.host(lv.r.pid).client
	ctx, cancel := context.WithTimeout(lv.r.ctx, lv.period)
	res := c.DoMulti(ctx, c.B().Exists().Key(key).Build(), c.B().Set().Key(key).Value(lv.value).Px(lv.ttl).Build())
	cancel()
	existed, err := res[0].AsInt64()
	if err == nil {
		err = res[1].Error()
	}
	if err != nil {
		if !lv.failing && lv.r.ctx.Err() == nil {
			lv.failing = true
			lv.r.log.Warn("layers: redis: cannot refresh this process's liveness key; retrying", "key", key, "err", err)
		}
		return
	}
	lv.failing = false
	if existed == 0 && lv.refreshed && !lv.expectGone.Load() {
		lv.lapses.Add(1)
		lv.r.log.Warn("layers: redis: this process's liveness key had gone (Redis restarted or flushed, or this "+
			"process was cut off for longer than Liveness): other processes may have removed its group members",
			"key", key)
	}
	lv.expectGone.Store(false)
	lv.refreshed, lv.lastRefresh = true, now
}

// sweep scans the groups this process joined, every sweepEvery, for members of other
// Go processes: those already known dead are removed, the others checked.
func (lv *liveness) sweep(now time.Time) {
	if now.Sub(lv.lastSweep) < lv.sweepEvery {
		return
	}
	lv.lastSweep = now
	expiry := time.Duration(lv.r.groupExpiry) * time.Second
	lv.mu.Lock()
	groups := make([]string, 0, len(lv.ownGroups))
	for g, joined := range lv.ownGroups {
		if now.Sub(joined) > expiry {
			delete(lv.ownGroups, g)
			continue
		}
		groups = append(groups, g)
	}
	lv.mu.Unlock()
	n := len(lv.r.hosts)
	byHost := make([][]string, n)
	for _, g := range groups {
		i := shardIndex(g, n)
		byHost[i] = append(byHost[i], g)
	}
	for hi, list := range byHost {
		c := lv.r.hosts[hi].client
		for len(list) > 0 {
			batch := list[:min(len(list), livenessSweepBatch)]
			list = list[len(batch):]
			cmds := make(rueidis.Commands, len(batch))
			for i, g := range batch {
				cmds[i] = c.B().Zrange().Key(lv.r.prefix + ":group:" + g).Min("0").Max("-1").Build()
			}
			ctx, cancel := context.WithTimeout(lv.r.ctx, lv.period)
			res := c.DoMulti(ctx, cmds...)
			cancel()
			for i, g := range batch {
				members, err := res[i].AsStrSlice()
				if err != nil {
					continue
				}
				dead, anyDead := lv.verdicts(g, members)
				if !anyDead {
					continue
				}
				var gone []string
				for _, ch := range members {
					if dead[goProcessID(ch)] {
						gone = append(gone, ch)
					}
				}
				lv.zrem(c, g, gone)
			}
		}
	}
}

// zrem removes members from group, counting them as stale.
func (lv *liveness) zrem(c rueidis.Client, group string, members []string) {
	if len(members) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(lv.r.ctx, lv.period)
	defer cancel()
	n, err := c.Do(ctx, c.B().Zrem().Key(lv.r.prefix+":group:"+group).Member(members...).Build()).AsInt64()
	if err == nil && n > 0 {
		lv.r.staleMembers.Add(uint64(n))
	}
}

// check reads the keys of the processes due for a check and of the suspects whose
// grace has passed, updates the verdicts, and prunes the newly dead from the groups
// their members were met in.
func (lv *liveness) check(now time.Time) {
	forgetAfter := 2 * lv.sweepEvery
	lv.mu.Lock()
	want := make(map[string]struct{}, len(lv.due))
	maps.Copy(want, lv.due)
	clear(lv.due)
	for pid, st := range lv.pids {
		switch {
		case !st.dead && !st.missingSince.IsZero() && now.Sub(st.missingSince) >= lv.deadAfter(st):
			want[pid] = struct{}{}
		case now.Sub(st.asked) > forgetAfter:
			delete(lv.pids, pid)
			delete(want, pid)
		}
	}
	lv.mu.Unlock()
	if len(want) == 0 {
		return
	}

	type answer struct {
		present bool
		period  time.Duration
	}
	answers := make(map[string]answer, len(want))
	n := len(lv.r.hosts)
	byHost := make([][]string, n)
	for pid := range want {
		i := shardIndex(pid, n)
		byHost[i] = append(byHost[i], pid)
	}
	for hi, list := range byHost {
		if len(list) == 0 {
			continue
		}
		c := lv.r.hosts[hi].client
		cmds := make(rueidis.Commands, len(list))
		for i, pid := range list {
			cmds[i] = c.B().Get().Key(lv.key(pid)).Build()
		}
		ctx, cancel := context.WithTimeout(lv.r.ctx, lv.period)
		res := c.DoMulti(ctx, cmds...)
		cancel()
		for i, pid := range list {
			v, err := res[i].ToString()
			switch {
			case err == nil:
				ms, _ := strconv.ParseInt(v, 10, 64)
				answers[pid] = answer{present: true, period: time.Duration(ms) * time.Millisecond}
			case rueidis.IsRedisNil(err):
				answers[pid] = answer{}
			}
			// Other errors leave the verdict as it was.
		}
	}

	prune := map[string]map[string]struct{}{}
	lv.mu.Lock()
	for pid, a := range answers {
		st := lv.pids[pid]
		if st == nil {
			continue
		}
		st.checked = now
		if a.present {
			st.missingSince, st.dead, st.period = time.Time{}, false, a.period
			clear(st.groups)
			continue
		}
		if st.missingSince.IsZero() {
			st.missingSince = now
		}
		if !st.dead && now.Sub(st.missingSince) >= lv.deadAfter(st) {
			st.dead = true
		}
		if st.dead && len(st.groups) > 0 {
			prune[pid] = maps.Clone(st.groups)
			clear(st.groups)
		}
	}
	lv.mu.Unlock()
	for pid, groups := range prune {
		for g := range groups {
			lv.pruneGroup(pid, g)
		}
	}
}

// pruneGroup removes a dead process's members from group.
func (lv *liveness) pruneGroup(pid, group string) {
	c := lv.r.hosts[shardIndex(group, len(lv.r.hosts))].client
	ctx, cancel := context.WithTimeout(lv.r.ctx, lv.period)
	members, err := c.Do(ctx, c.B().Zrange().Key(lv.r.prefix+":group:"+group).Min("0").Max("-1").Build()).AsStrSlice()
	cancel()
	if err != nil {
		return
	}
	var gone []string
	for _, ch := range members {
		if goProcessID(ch) == pid {
			gone = append(gone, ch)
		}
	}
	lv.zrem(c, group, gone)
}
