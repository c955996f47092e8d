package layers

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
)

// loop is a host's receive loop: it pops this process's queue keys (only key, when
// set) and routes each message to its local channel. It never blocks on a consumer.
func (r *Redis) loop(h *redisHost, only string) {
	defer r.wg.Done()
	var backoff time.Duration
	failing := false
	var downSince time.Time
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	logAttrs := []any{"host", h.name}
	var fixed []string
	if only != "" {
		logAttrs = append(logAttrs, "key", only)
		fixed = []string{only}
	}
	for r.ctx.Err() == nil {
		keys := fixed
		if keys == nil {
			keys = *r.keys.Load()
		}
		c := h.client
		arr, err := c.Do(r.ctx, c.B().Bzpopmin().Key(keys...).Timeout(redisLoopBlock.Seconds()).Build()).ToArray()
		if err == nil && len(arr) != 3 {
			err = fmt.Errorf("BZPOPMIN replied %d elements", len(arr))
		}
		if err != nil && !rueidis.IsRedisNil(err) {
			if r.ctx.Err() != nil {
				return
			}
			if !failing {
				failing, downSince = true, time.Now()
				r.log.Warn("layers: redis: receive loop cannot reach Redis; retrying", append(logAttrs, "err", err)...)
			}
			if !r.backoff(timer, &backoff) {
				return
			}
			continue
		}
		if failing {
			failing, backoff = false, 0
			if r.rejoining.CompareAndSwap(false, true) { // Cluster mode has a loop per key
				r.wg.Add(1)
				go r.rejoin(slices.Index(r.hosts, h))
			}
			r.reconnected(h.name, time.Since(downSince), "layers: redis: receive loop resumed", logAttrs...)
		}
		if err != nil { // timed out
			r.mu.Lock()
			r.sweepLocked(r.localNow())
			r.mu.Unlock()
			continue
		}
		key, _ := arr[0].ToString()
		member, _ := arr[1].ToString()
		r.route(key, member)
		// More may be waiting: take them in batches without blocking.
		for r.ctx.Err() == nil {
			zs, err := c.Do(r.ctx, c.B().Zpopmin().Key(key).Count(redisDrainBatch).Build()).AsZScores()
			if err != nil {
				break // the next BZPOPMIN reports it
			}
			for _, z := range zs {
				r.route(key, z.Member)
			}
			if len(zs) < redisDrainBatch {
				break
			}
		}
	}
}

// route hands a message popped from a process queue to its channel(s).
func (r *Redis) route(key, member string) {
	msg, err := r.decode([]byte(member))
	if err != nil {
		r.reportMalformed("key", key, len(member), err)
		return
	}
	target, ok := msg[asgiChannelKey]
	delete(msg, asgiChannelKey)
	if msg.ValidateType() != nil {
		r.reportMalformed("key", key, len(member), errors.New("no valid string \"type\""))
		return
	}
	if r.closed.Load() {
		return
	}
	now := r.localNow()
	switch t := target.(type) {
	case string:
		r.deliverLocal(t, msg, now)
	case []any:
		names := make([]string, 0, len(t))
		for _, e := range t {
			if name, ok := e.(string); ok {
				names = append(names, name)
			}
		}
		if len(names) != len(t) {
			r.reportMalformed("key", key, len(member), errors.New("__asgi_channel__ lists a non-string"))
		}
		r.deliverMany(names, msg, now)
	default:
		if !ok {
			err = errors.New("no __asgi_channel__ on a process queue")
		} else {
			err = fmt.Errorf("__asgi_channel__ is a %T", t)
		}
		r.reportMalformed("key", key, len(member), err)
	}
}

// deliverMany is deliverLocal for a group copy's channels, looking the attached ones
// up under one lock.
func (r *Redis) deliverMany(names []string, msg canal.Message, now time.Duration) {
	ls := make([]*redisListener, len(names))
	r.mu.RLock()
	for i, name := range names {
		ls[i] = r.listeners[name]
	}
	r.mu.RUnlock()
	for i, l := range ls {
		if l == nil {
			r.deliverLocal(names[i], msg, now) // not attached: the general path
		} else {
			r.hand(l, msg)
		}
	}
}

// deliverLocal hands msg to a local channel without ever waiting.
func (r *Redis) deliverLocal(name string, msg canal.Message, now time.Duration) {
	if !r.ownChannel(name) {
		r.undeliverable.Add(1)
		return
	}
	r.mu.RLock()
	l := r.listeners[name]
	q := r.buffers[name]
	r.mu.RUnlock()
	switch {
	case l != nil:
		r.hand(l, msg)
		return
	case r.isAttachName(name):
		r.undeliverable.Add(1) // detached
		return
	case q == nil:
		r.mu.Lock()
		if r.closed.Load() {
			r.mu.Unlock()
			return
		}
		q = r.bufferLocked(name, now)
		r.mu.Unlock()
	}
	r.enqueue(q, msg, now)
}
