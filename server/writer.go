package server

import (
	"errors"
	"slices"
	"sync"

	"github.com/canal-rt/canal"
)

// The outbox and its writer. Send puts frames in the outbox; the writer, a task on the
// server's write workers, encodes everything due (frames, a ping, the close) into one
// write (a buffer, and references to large payloads: vec) and hands it to the socket
// in one system call that never waits for the peer (sock).
// A connection has at most one writer task queued or running (c.writing).
//
// Bounds: the outbox holds at most SendQueue frames. It fills only when frames come
// faster than the writer runs (a handler sending in a loop, a burst of group events),
// not because of the peer, since the writer never waits for the network: Send then
// waits for the writer (back-pressure on the handler, as Channels' await send), and
// the fan-out path leaves the frame in the inbox. What the peer does not take is the
// socket's business: past SendBuffer bytes it is a slow consumer (1013).

// writeRounds is how many buffers a busy connection writes before its writer goes to
// the back of the queue, so one connection cannot keep a write worker to itself.
const writeRounds = 4

// writeBufs lends the writers their encode buffers. Buffers grown past maxPooledBuf by
// a large frame are left to the garbage collector.
var writeBufs = sync.Pool{New: func() any { return &vec{buf: make([]byte, 0, 16<<10)} }}

const (
	maxPooledBuf  = 256 << 10
	maxPooledRefs = 1024
)

// Outbox arrays. A burst to thousands of sockets fills every outbox faster than the
// writers drain them; growing each by doubling made ~8 KiB of garbage per socket per
// burst, which the garbage collector let pile up to the size of the live heap (its
// headroom counts goroutine stacks). Arrays of three sizes are recycled instead. The
// pools hold no more than the arrays outboxes gave back (at most one per connection,
// each within SendQueue), and the garbage collector empties them.
var outboxArrays [len(outboxSizes)]sync.Pool

func init() {
	for i, n := range outboxSizes {
		outboxArrays[i].New = func() any { a := make([]canal.Frame, 0, n); return &a }
	}
}

// outboxSizes are the recycled capacities: doubling keeps the unused part of an array
// below half (a burst of 100 frames held by 5,000 sockets took 256-frame arrays with
// steps of 4: 40 MiB live where 20 do), and 256 is SendQueue's default.
var outboxSizes = [...]int{16, 32, 64, 128, 256}

// growOutbox moves the outbox to a larger array, recycling the one it leaves.
// Pooled arrays travel with their *[]canal.Frame holder (c.arr), so recycling
// allocates nothing.
func (c *conn) growOutbox() {
	i := 0
	for i < len(outboxSizes) && outboxSizes[i] <= cap(c.outbox) {
		i++
	}
	if i == len(outboxSizes) { // past the recycled sizes (SendQueue above 256)
		c.outbox = slices.Grow(c.outbox, len(c.outbox))
		return
	}
	h := outboxArrays[i].Get().(*[]canal.Frame)
	next := append((*h)[:0], c.outbox...)
	c.releaseOutbox()
	c.outbox, c.arr = next, h
}

// releaseOutbox recycles the outbox's pooled array, if it has one, cleared so that it
// keeps no frame data alive, and leaves the outbox empty on the inline array.
func (c *conn) releaseOutbox() {
	if h := c.arr; h != nil {
		a := (*h)[:cap(*h)]
		clear(a)
		*h = a[:0]
		for i, n := range outboxSizes {
			if n == cap(a) {
				outboxArrays[i].Put(h)
			}
		}
		c.arr = nil
	}
	c.outbox = c.one[:0]
}

// dropOutboxLocked forgets every queued frame (the connection is closing), keeping
// no frame data alive.
func (c *conn) dropOutboxLocked() {
	c.releaseOutbox()
	c.one = [1]canal.Frame{}
	c.outbox = nil
}

func (c *conn) kickWriter() {
	if c.writing || c.wire == nil || ((len(c.outbox) == 0 || c.stalled) && !c.pingDue && (c.closeCode == 0 || c.closeSent)) {
		return
	}
	c.writing = true
	c.wg.Add(1)
	c.srv.writers.run(c.writeTask)
}

func (c *conn) write() {
	defer c.wg.Done()
	v := writeBufs.Get().(*vec)
	defer func() {
		v.reset()
		if cap(v.buf) <= maxPooledBuf && cap(v.refs) <= maxPooledRefs {
			writeBufs.Put(v)
		}
	}()
	for round := 0; ; round++ {
		c.mu.Lock()
		if round == writeRounds {
			c.writing = false
			c.kickWriter() // to the back of the queue, if there is more
			c.mu.Unlock()
			return
		}
		w := c.wire
		v.reset()
		// While the socket holds half of SendBuffer for a peer that is behind, frames
		// stay in the outbox (they may be shared by a whole group, and cost nothing
		// there), and the flusher resumes the writer once the peer has caught up.
		half := c.srv.opts.SendBuffer / 2
		c.stalled = w.sock().buffered() >= half
		if !c.stalled && len(c.outbox) > 0 {
			n := 0
			for n < len(c.outbox) && (n == 0 || v.len() < half) {
				w.addFrame(v, c.outbox[n])
				c.outbox[n] = canal.Frame{}
				n++
			}
			c.srv.stats.sent.Add(uint64(n))
			if n == len(c.outbox) {
				// The inline one-frame array, not outbox[:0]: an idle socket keeps no
				// grown array, and the next delivery allocates nothing.
				c.releaseOutbox()
			} else {
				c.outbox = c.outbox[n:]
			}
		}
		c.outSpace.Broadcast()
		if c.pingDue {
			c.pingDue = false
			if c.state == stateAccepted {
				v.buf = w.appendPing(v.buf)
			}
		}
		closing := false
		if c.closeCode != 0 && !c.closeSent {
			c.closeSent, closing = true, true
			v.buf = w.appendClose(v.buf, c.closeCode, c.closeText)
		}
		if v.len() == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		err := w.sock().writev(v)
		if err != nil {
			c.writeFailed(err)
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		if closing {
			w.closed()
		}
	}
}

// writeFailed ends a connection whose socket failed or whose peer does not read (the
// sock says errSlowConsumer, or a blocked write outlived WriteTimeout): the socket is
// dropped at once, with no close frame (the peer takes nothing), and Disconnect gets
// 1013. Any other failure is a vanished peer: 1006.
func (c *conn) writeFailed(err error) {
	c.mu.Lock()
	if errors.Is(err, errSlowConsumer) || isTimeout(err) {
		c.slowLocked(err.Error())
	}
	c.dropOutboxLocked()
	c.outSpace.Broadcast()
	c.mu.Unlock()
	c.abort()
}

// ping runs on the keepalive timer. The writer sends the ping, in line with the
// frames, so that it costs two bytes in the next write and no allocation.
func (c *conn) ping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateAccepted {
		return
	}
	c.pingDue = true
	c.kickWriter()
	c.pinger.Reset(c.srv.opts.PingInterval)
}

// isTimeout reports whether err is a write deadline passing.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
