package server

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// validUpgrade checks what the upgrade itself needs, so a malformed handshake gets 400
// before any handler runs rather than failing after the accept.
func validUpgrade(fctx *fasthttp.RequestCtx) bool {
	if !fctx.IsGet() {
		return false
	}
	if !headerHasToken(string(fctx.Request.Header.Peek("Sec-WebSocket-Version")), "13") {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(string(fctx.Request.Header.Peek("Sec-WebSocket-Key")))
	return err == nil && len(key) == 16
}

func headerHasToken(v, token string) bool {
	for _, t := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// hijacker is the http.ResponseWriter the websocket library upgrades through: fasthttp
// has already handed the socket over, so Hijack just returns it. The handshake was
// validated before, so the error-writing methods are never reached in practice.
type hijacker struct {
	conn net.Conn
	br   *bufio.Reader
}

func (h *hijacker) Header() http.Header         { return http.Header{} }
func (h *hijacker) Write(p []byte) (int, error) { return len(p), nil }
func (h *hijacker) WriteHeader(int)             {}

// Hijack hands over the socket with a fresh reader (the library reuses it as the
// connection's read buffer) and a small writer used once for the 101 answer.
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(h.br, bufio.NewWriterSize(h.conn, 256)), nil
}

// batchConn lets the writer goroutine coalesce queued frames into one write system
// call: between begin and end, writes land in a pooled buffer. Outside a batch, writes
// (pings, close frames from other goroutines) go straight to the socket. An idle
// connection holds no write buffer.
//
// Concurrency: safe for concurrent use; the library serializes its writes, and mu
// orders them with begin and end.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf *bufio.Writer // non-nil during a batch

	// The library sets a write deadline before every frame, and re-arming the socket's
	// timer costs about as much as writing a small frame. A new deadline at most slack
	// later than the one in force is skipped, so a write may get between timeout-slack
	// and timeout; an earlier or cleared deadline always applies.
	slack time.Duration
	armed time.Time // the deadline in force
}

// SetWriteDeadline implements net.Conn.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !t.IsZero() && !b.armed.IsZero() && !t.Before(b.armed) && t.Sub(b.armed) < b.slack {
		return nil
	}
	b.armed = t
	return b.Conn.SetWriteDeadline(t)
}

// SetDeadline implements net.Conn.
func (b *batchConn) SetDeadline(t time.Time) error {
	b.mu.Lock()
	b.armed = t
	b.mu.Unlock()
	return b.Conn.SetDeadline(t)
}

var batchBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf != nil {
		return b.buf.Write(p)
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := batchBuffers.Get().(*bufio.Writer)
	w.Reset(b.Conn)
	b.buf = w
}

// end flushes the batch. Writes never block on mu for long: a flush is bounded by the
// write deadline the caller set.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.buf
	b.buf = nil
	err := w.Flush()
	w.Reset(nil)
	batchBuffers.Put(w)
	return err
}

// inBatch runs write with the batch on, so that what it writes goes out in one system
// call where it fits, and returns write's error or else the flush's.
func (b *batchConn) inBatch(write func() error) error {
	b.begin()
	err := write()
	if ferr := b.end(); err == nil {
		err = ferr
	}
	return err
}

// writeBuffers lends write buffers to sockets only while they write a message.
type writeBuffers struct{ p sync.Pool }

func (w *writeBuffers) Get() any  { return w.p.Get() }
func (w *writeBuffers) Put(v any) { w.p.Put(v) }
