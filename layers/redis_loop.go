package layers

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
)

// loop is a host's receive loop: it pops this process's queue keys (only key, when
// set) and hands each message to a router goroutine of its own, which decodes it and
// routes it to its local channel(s) without ever blocking on a consumer.
//
// Popping and routing are apart because channels_redis counts capacity per Redis key:
// every channel of this process shares one queue of RedisOptions.Capacity (100 by
// default), and group_send skips a full key silently. A loop that routed each message
// before popping the next left that queue filling up whenever routing was slow (a CPU
// shared with thousands of busy sockets), and whole group messages were lost for
// every member. The loop now keeps popping while the router works, up to a hard
// bound (redisPopAhead messages and RedisOptions.ReceiveBuffer bytes popped and not yet
// routed); past it, it waits, and Redis' capacity applies as with channels_redis.
func (r *Redis) loop(h *redisHost, only string) {
	defer r.wg.Done()
	ahead := newPopAhead(r.receiveBuf)
	r.wg.Add(1)
	go r.router(ahead)
	defer close(ahead.ch)
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
		if !ahead.put(r.ctx, popped{key, member}) {
			return
		}
		// More may be waiting: take them in batches without blocking, as long as the
		// router keeps up within the bound.
		last := int64(len(member))
		for r.ctx.Err() == nil && ahead.room(r.ctx, redisDrainBatch) {
			// As many as fit in the byte budget at the last message's size, so what
			// waits in the loop's hands stays about one message.
			batch := max(1, min(redisDrainBatch, (ahead.max-ahead.bytes.Load())/max(last, 1)))
			zs, err := c.Do(r.ctx, c.B().Zpopmin().Key(key).Count(batch).Build()).AsZScores()
			if err != nil {
				break // the next BZPOPMIN reports it
			}
			for _, z := range zs {
				if !ahead.put(r.ctx, popped{key, z.Member}) {
					return
				}
				last = int64(len(z.Member))
			}
			if int64(len(zs)) < batch {
				break
			}
		}
	}
}

// popped is a message taken from a process queue, not yet decoded.
type popped struct{ key, member string }

// popAhead is the bounded hand-over between a receive loop and its router: at most
// redisPopAhead messages (the channel's capacity) and max bytes
// (a single larger message still passes alone, so one message never blocks forever).
type popAhead struct {
	max   int64
	ch    chan popped
	bytes atomic.Int64
	space chan struct{} // a token when the router freed bytes
}

func newPopAhead(max int64) *popAhead {
	return &popAhead{max: max, ch: make(chan popped, redisPopAhead), space: make(chan struct{}, 1)}
}

// room waits until n more messages of average size could be popped: fewer than
// redisPopAhead-n queued and the byte budget not spent. It reports false when ctx ends.
func (a *popAhead) room(ctx context.Context, n int) bool {
	for len(a.ch) > redisPopAhead-n || a.bytes.Load() >= a.max {
		select {
		case <-a.space:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// put hands p to the router, waiting for room; false when ctx ends first.
func (a *popAhead) put(ctx context.Context, p popped) bool {
	n := int64(len(p.member))
	for {
		b := a.bytes.Load()
		if b == 0 || b+n <= a.max {
			break
		}
		select {
		case <-a.space:
		case <-ctx.Done():
			return false
		}
	}
	a.bytes.Add(n)
	select {
	case a.ch <- p:
		return true
	case <-ctx.Done():
		return false
	}
}

// router routes what its loop popped, in order, until the loop closes the channel.
func (r *Redis) router(a *popAhead) {
	defer r.wg.Done()
	var ls []*redisListener // deliverMany's lookups, reused: one slot per local member
	for p := range a.ch {
		r.route(p.key, p.member, &ls)
		a.bytes.Add(-int64(len(p.member)))
		select {
		case a.space <- struct{}{}:
		default:
		}
	}
}

// route hands a message popped from a process queue to its channel(s).
func (r *Redis) route(key, member string, ls *[]*redisListener) {
	// A group copy is about 50 bytes per local member (a megabyte at 19,000): its
	// bytes are read in place, and its names looked up without becoming strings.
	msg, names, err := r.decodeRouted(unsafe.Slice(unsafe.StringData(member), len(member)))
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
	if names.raw != nil { // a msgpack group copy: the names were left encoded
		r.deliverMany(names.all(), msg, now, ls)
		return
	}
	switch t := target.(type) {
	case string:
		r.deliverLocal(t, msg, now)
	case []any: // a JSON group copy, or a list with a non-string in it
		r.deliverMany(stringsIn(t), msg, now, ls)
		if slices.ContainsFunc(t, func(e any) bool { _, ok := e.(string); return !ok }) {
			r.reportMalformed("key", key, len(member), errors.New("__asgi_channel__ lists a non-string"))
		}
	default:
		if !ok {
			err = errors.New("no __asgi_channel__ on a process queue")
		} else {
			err = fmt.Errorf("__asgi_channel__ is a %T", t)
		}
		r.reportMalformed("key", key, len(member), err)
	}
}

// stringsIn yields the bytes of the strings in list, skipping anything else.
func stringsIn(list []any) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for _, e := range list {
			if s, ok := e.(string); ok && !yield(unsafe.Slice(unsafe.StringData(s), len(s))) {
				return
			}
		}
	}
}

// deliverMany is deliverLocal for a group copy's channels, looking the attached ones
// up under one lock, without a string per name. names is read twice; its bytes are
// only read. ls is the router's lookup buffer, cleared after use so that it keeps no
// listener alive.
func (r *Redis) deliverMany(names iter.Seq[[]byte], msg canal.Message, now time.Duration, ls *[]*redisListener) {
	found := (*ls)[:0]
	r.mu.RLock()
	for name := range names {
		found = append(found, r.listeners[string(name)])
	}
	r.mu.RUnlock()
	i := 0
	for name := range names {
		if l := found[i]; l == nil {
			r.deliverLocal(string(name), msg, now) // not attached: the general path
		} else {
			r.hand(l, msg)
		}
		i++
	}
	clear(found)
	*ls = found
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
