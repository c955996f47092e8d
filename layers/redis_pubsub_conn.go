package layers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
)

// pubsubHost is one server: a client for PUBLISH and a subscriber connection. In
// Cluster mode it is one master, and client is a plain client of that master, dialed
// on first use.
type pubsubHost struct {
	name   string
	addr   string // Cluster mode: the master's address
	client rueidis.Client
	// mu serializes subscription changes and reconnections, so none is lost between
	// a reconnection's snapshot and its SUBSCRIBE.
	mu   sync.Mutex
	dc   rueidis.DedicatedClient // nil while disconnected
	lost <-chan error            // dc's disconnection signal
	// subs is what this host's connection must be subscribed to. Writers hold mu and
	// smu, except the Cluster mode's sunsubscribe hook, which runs on the
	// connection's reader and holds smu only; readers hold either (smu in Cluster
	// mode).
	smu  sync.Mutex
	subs map[string]bool
	// inbox takes messages from the connection's reader to the dispatcher, so that
	// deliver funcs never run on the reader: one that subscribes (GroupAdd,
	// NewChannel) would otherwise wait for the reader forever.
	inbox chan rueidis.PubSubMessage
}

// pubsubInbox is the number of messages a host's dispatcher may fall behind its
// connection before it drops them (counted in Stats().Dropped).
const pubsubInbox = 4096

func newPubSubHost(name, addr string, client rueidis.Client) *pubsubHost {
	return &pubsubHost{name: name, addr: addr, client: client, subs: make(map[string]bool),
		inbox: make(chan rueidis.PubSubMessage, pubsubInbox)}
}

// has reports whether h's connection must be subscribed to name.
func (h *pubsubHost) has(name string) bool {
	h.smu.Lock()
	defer h.smu.Unlock()
	return h.subs[name]
}

// setSub records name as subscribed (on) or not; h.mu must be held.
func (h *pubsubHost) setSub(name string, on bool) {
	h.smu.Lock()
	if on {
		h.subs[name] = true
	} else {
		delete(h.subs, name)
	}
	h.smu.Unlock()
}

// connect opens h's subscriber connection and subscribes it to h.subs; h.mu must be
// held (or h not yet shared). In Cluster mode, channels whose slot h no longer owns
// are handed to the janitor to subscribe on their owner.
func (r *RedisPubSub) connect(ctx context.Context, h *pubsubHost) error {
	if h.client == nil {
		c, err := r.dialNode(h.addr)
		if err != nil {
			return err
		}
		h.client = c
	}
	dc, _ := h.client.Dedicate()
	hooks := rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) {
		select {
		case h.inbox <- m:
		default:
			r.dropped.Add(1) // the dispatcher is that far behind: never block the reader
		}
	}}
	if r.cluster {
		hooks.OnSubscription = func(s rueidis.PubSubSubscription) {
			if s.Kind == "sunsubscribe" {
				r.lostSubscription(h, s.Channel)
			}
		}
	}
	lost := dc.SetPubSubHooks(hooks)
	h.smu.Lock()
	names := slices.Collect(maps.Keys(h.subs))
	h.smu.Unlock()
	var err error
	switch {
	case r.cluster:
		err = r.subscribeShards(ctx, h, dc, names)
	case len(names) > 0:
		err = dc.Do(ctx, dc.B().Subscribe().Channel(names...).Build()).Error()
	default:
		err = dc.Do(ctx, dc.B().Ping().Build()).Error()
	}
	if err != nil {
		dc.Close()
		return err
	}
	h.dc, h.lost = dc, lost
	return nil
}

func (r *RedisPubSub) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// holder returns the host whose connection is subscribed to name, or nil.
func (r *RedisPubSub) holder(name string) *pubsubHost {
	if h := r.host(name); h != nil && h.has(name) {
		return h
	}
	if !r.cluster {
		return nil
	}
	r.nmu.Lock()
	hosts := slices.Clone(r.shards)
	r.nmu.Unlock()
	for _, h := range hosts {
		if h.has(name) {
			return h
		}
	}
	return nil
}

// supervise watches h's subscriber connection and re-establishes it after a failure.
// A Cluster mode host starts without a connection: it makes the first one.
func (r *RedisPubSub) supervise(h *pubsubHost) {
	defer r.wg.Done()
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		h.mu.Lock()
		lost := h.lost
		h.mu.Unlock()
		var downSince time.Time
		if lost != nil {
			var err error
			select {
			case err = <-lost:
			case <-r.ctx.Done():
			}
			h.mu.Lock()
			if h.lost == lost {
				h.dc.Close()
				h.dc, h.lost = nil, nil
			}
			h.mu.Unlock()
			if r.ctx.Err() != nil {
				return
			}
			downSince = time.Now()
			r.log.Warn("layers: redis pubsub: subscriber connection lost; reconnecting (messages published meanwhile are lost)",
				"host", h.name, "err", err)
		}
		var backoff time.Duration
		for {
			if !r.backoff(timer, &backoff) {
				return
			}
			if r.cluster {
				r.refreshSlots(r.ctx) // the slots may have a new owner
			}
			h.mu.Lock()
			var err error
			if h.dc == nil { // a subscribe may have connected meanwhile
				err = r.connect(r.ctx, h)
			}
			h.smu.Lock()
			n := len(h.subs)
			h.smu.Unlock()
			h.mu.Unlock()
			if err == nil {
				if !downSince.IsZero() {
					r.reconnected(h.name, time.Since(downSince), "layers: redis pubsub: resubscribed", "host", h.name, "channels", n)
				}
				break
			}
		}
		r.poke() // strays may wait for this master
	}
}

// janitor runs the unsubscribes detach queues, unsubscribes idle Receive channels and,
// in Cluster mode, subscribes strays again.
func (r *RedisPubSub) janitor() {
	defer r.wg.Done()
	tick := time.NewTicker(max(r.expiry/2, 10*time.Millisecond))
	defer tick.Stop()
	var strayTick <-chan time.Time
	if r.cluster {
		t := time.NewTicker(pubsubStrayRetry)
		defer t.Stop()
		strayTick = t.C
	}
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		case <-strayTick:
		case <-tick.C:
			r.sweep()
		}
		if r.cluster {
			r.resubscribeStrays()
		}
		r.pendingMu.Lock()
		names := r.pending
		r.pending = nil
		r.pendingMu.Unlock()
		for _, name := range names {
			r.unsubscribe(r.ctx, name)
		}
	}
}

// host returns the host that serves name: by channels_redis' sharding, or in Cluster
// mode the master that owns its slot (nil when none is known, or once closed).
func (r *RedisPubSub) host(name string) *pubsubHost {
	if !r.cluster {
		return r.shards[shardIndex(name, len(r.shards))]
	}
	addr := r.slots.Load().ownerOf(keySlot(name))
	if addr == "" {
		return nil
	}
	return r.nodeHost(addr)
}

// subscribe makes name's host subscribed to it. In Cluster mode a MOVED reply
// reloads the slot map and tries the new owner once.
func (r *RedisPubSub) subscribe(ctx context.Context, name string) error {
	for attempt := 0; ; attempt++ {
		h := r.host(name)
		if h == nil {
			if r.closed.Load() {
				return canal.ErrLayerClosed
			}
			if attempt == 0 {
				r.slotsAt.Store(0)
				r.refreshSlots(ctx)
				continue
			}
			return r.fail("subscribe", fmt.Errorf("no master serves the slot of %q", name))
		}
		err := r.subscribeOn(ctx, h, name)
		if attempt == 0 && r.cluster && isMovedErr(err) {
			r.slotsAt.Store(0)
			r.refreshSlots(ctx)
			continue
		}
		if err != nil {
			return r.fail("subscribe", err)
		}
		return nil
	}
}

func (r *RedisPubSub) subscribeOn(ctx context.Context, h *pubsubHost, name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.has(name) {
		return nil
	}
	if h.dc == nil {
		if !r.cluster {
			return fmt.Errorf("subscriber connection to %s is down", h.name)
		}
		if err := r.connect(ctx, h); err != nil { // first use, or the supervisor is waiting to retry
			return err
		}
	}
	cmd := h.dc.B().Subscribe().Channel(name).Build()
	if r.cluster {
		cmd = h.dc.B().Ssubscribe().Channel(name).Build()
	}
	if err := h.dc.Do(ctx, cmd).Error(); err != nil {
		return err
	}
	h.setSub(name, true)
	return nil
}

// unsubscribe ends name's subscription; a failure only leaves a subscription whose
// messages nobody takes.
func (r *RedisPubSub) unsubscribe(ctx context.Context, name string) error {
	h := r.holder(name)
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.has(name) {
		return nil
	}
	h.setSub(name, false)
	if h.dc == nil {
		return nil // the next connection will not subscribe to it
	}
	cmd := h.dc.B().Unsubscribe().Channel(name).Build()
	if r.cluster {
		cmd = h.dc.B().Sunsubscribe().Channel(name).Build()
	}
	if err := h.dc.Do(ctx, cmd).Error(); err != nil {
		return r.fail("unsubscribe", err)
	}
	return nil
}
