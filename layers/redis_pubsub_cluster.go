package layers

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/redis/rueidis"
)

// subscribeShards SSUBSCRIBEs a new connection of master h to names, one command per
// slot (Redis refuses a SSUBSCRIBE across slots); names whose slot h does not own, by
// the layer's map or by the server's MOVED reply, become strays.
func (r *RedisPubSub) subscribeShards(ctx context.Context, h *pubsubHost, dc rueidis.DedicatedClient, names []string) error {
	slots := r.slots.Load()
	bySlot := map[uint16][]string{}
	for _, name := range names {
		slot := keySlot(name)
		if slots.ownerOf(slot) != h.addr {
			h.setSub(name, false)
			r.addStray(name, time.Now())
			continue
		}
		bySlot[slot] = append(bySlot[slot], name)
	}
	if len(bySlot) == 0 {
		return dc.Do(ctx, dc.B().Ping().Build()).Error()
	}
	groups := slices.Collect(maps.Values(bySlot))
	cmds := make(rueidis.Commands, len(groups))
	for i, g := range groups {
		cmds[i] = dc.B().Ssubscribe().Channel(g...).Build()
	}
	for i, res := range dc.DoMulti(ctx, cmds...) {
		err := res.Error()
		if err == nil {
			continue
		}
		if !isMovedErr(err) {
			return err
		}
		for _, name := range groups[i] {
			h.setSub(name, false)
			r.addStray(name, time.Now())
		}
	}
	return nil
}

// isMovedErr reports whether err is a MOVED or ASK redirection.
func isMovedErr(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	_, moved := rerr.IsMoved()
	_, ask := rerr.IsAsk()
	return moved || ask
}

// dialNode returns a plain client of one master (Cluster mode).
func (r *RedisPubSub) dialNode(addr string) (rueidis.Client, error) {
	opt := rueidis.ClientOption{DisableCache: true}
	if r.hook != nil {
		r.hook(&opt)
	}
	opt.InitAddress, opt.ForceSingleClient, opt.DisableCache = []string{addr}, true, true
	return rueidis.NewClient(opt)
}

// nodeHost returns the subscriber host of the master at addr, creating it (and its
// goroutines) on first use; nil once closed.
func (r *RedisPubSub) nodeHost(addr string) *pubsubHost {
	r.nmu.Lock()
	defer r.nmu.Unlock()
	if h := r.nodes[addr]; h != nil {
		return h
	}
	if r.closed.Load() {
		return nil
	}
	h := newPubSubHost(addr, addr, nil)
	r.nodes[addr] = h
	r.shards = append(r.shards, h)
	r.wg.Add(2)
	go r.supervise(h)
	go r.dispatch(h)
	return h
}

// refreshSlots reloads the slot map, at most every 100 ms.
func (r *RedisPubSub) refreshSlots(ctx context.Context) {
	now := time.Now().UnixNano()
	last := r.slotsAt.Load()
	if now-last < int64(100*time.Millisecond) || !r.slotsAt.CompareAndSwap(last, now) {
		return
	}
	if s, err := loadClusterSlots(ctx, r.hosts[0].client); err == nil {
		r.slots.Store(s)
	}
}

// lostSubscription handles a sunsubscribe the layer did not ask for (the channel's
// slot left h's master). It runs on the connection's reader: no I/O, no h.mu.
func (r *RedisPubSub) lostSubscription(h *pubsubHost, name string) {
	h.smu.Lock()
	had := h.subs[name]
	delete(h.subs, name)
	h.smu.Unlock()
	if had {
		r.addStray(name, time.Now())
		r.poke()
	}
}

func (r *RedisPubSub) addStray(name string, since time.Time) {
	r.pendingMu.Lock()
	if r.stray == nil {
		r.stray = make(map[string]time.Time)
	}
	if _, ok := r.stray[name]; !ok {
		r.stray[name] = since
	}
	r.pendingMu.Unlock()
}

// wanted reports whether this process still needs name subscribed.
func (r *RedisPubSub) wanted(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.chans[name] != nil {
		return true
	}
	_, ok := r.groups[name]
	return ok
}

// resubscribeStrays subscribes the strays still wanted on their current master and
// reports the gaps; those that fail wait for the next round.
func (r *RedisPubSub) resubscribeStrays() {
	r.pendingMu.Lock()
	strays := maps.Clone(r.stray)
	r.pendingMu.Unlock()
	if len(strays) == 0 {
		return
	}
	r.refreshSlots(r.ctx)
	gaps := map[*pubsubHost]time.Duration{}
	for name, since := range strays {
		done := !r.wanted(name)
		if !done {
			ctx, cancel := context.WithTimeout(r.ctx, redisMaxBackoff)
			err := r.subscribe(ctx, name)
			cancel()
			if err == nil {
				done = true
				if h := r.holder(name); h != nil {
					gaps[h] = max(gaps[h], time.Since(since))
				}
			}
		}
		if done {
			r.pendingMu.Lock()
			if r.stray[name] == since {
				delete(r.stray, name)
			}
			r.pendingMu.Unlock()
		}
	}
	for h, gap := range gaps {
		r.reconnected(h.name, gap,
			"layers: redis pubsub: resubscribed channels whose slot moved (messages published meanwhile are lost)", "host", h.name)
	}
}

// pubsubStrayRetry is how often the janitor retries strays (Cluster mode).
const pubsubStrayRetry = 250 * time.Millisecond
