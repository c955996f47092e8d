package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/canal-rt/canal"
)

// Server-Sent Events: with Options.EventStreams, a GET that accepts text/event-stream
// becomes a connection of Scope.Type "sse". It runs the same handlers, middleware and
// consumers as a WebSocket: Connect, Accept (the 200 and its headers), Send, Close,
// group events. The client cannot send anything back, so Receive is never called.
// This is what Channels users miss most in HTTP consumers: a long-lived HTTP response
// that receives channel layer events.

// ErrTextOnly is returned by Send for a binary frame on an event stream.
var ErrTextOnly = errors.New("server: event streams carry text frames only")

// ScopeTypeSSE is Scope.Type of an event stream; WebSockets have "websocket".
const ScopeTypeSSE = "sse"

// isEventStream reports whether a request asks for an event stream.
func isEventStream(fctx *fasthttp.RequestCtx) bool {
	return fctx.IsGet() && bytes.Contains(fctx.Request.Header.Peek("Accept"), []byte("text/event-stream"))
}

// eventMemo remembers the encoding of the last frame data it saw. A group message
// reaches every stream as the same frame (consumer.Options.Frames builds it once), so
// the writers of a fan-out encode it once, not once per stream. Frame data is not
// modified after Send, so the same backing array means the same bytes.
//
// Concurrency: safe for concurrent use.
type eventMemo struct{ last atomic.Pointer[memoEvent] }

type memoEvent struct {
	data    []byte // kept so its backing array cannot be reused while remembered
	encoded []byte
}

var lastEvent eventMemo

func (m *eventMemo) encode(data []byte) []byte {
	if e := m.last.Load(); e != nil && len(e.data) == len(data) && unsafe.SliceData(e.data) == unsafe.SliceData(data) {
		return e.encoded
	}
	enc := encodeEvent("", data)
	m.last.Store(&memoEvent{data: data, encoded: enc})
	return enc
}

// encodeEvent formats one event. A frame's CR, LF and CRLF line breaks each start a
// new data line, so the client's EventSource joins them back with LF.
func encodeEvent(name string, data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data) + 16)
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteByte('\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		b.WriteString("data: ")
		if i < 0 {
			b.Write(data)
			b.WriteByte('\n')
			break
		}
		b.Write(data[:i])
		b.WriteByte('\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// headerSafe drops line breaks, so that a value cannot end its header line.
var headerSafe = strings.NewReplacer("\r", "", "\n", "")

// openStream answers 200 with the event-stream headers (and the frames Connect
// queued) on the socket fasthttp handed over. On failure it closes the socket, ends
// the connection and returns nil.
func (c *conn) openStream(raw net.Conn, header http.Header) *sseWire {
	s := c.newSock(raw)
	w := &sseWire{s: s}
	var head strings.Builder
	head.WriteString("HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-cache\r\n" +
		"X-Accel-Buffering: no\r\n" + // nginx: pass events on as they come
		"Connection: close\r\n") // the stream ends when the socket does
	if origin := c.scope.Headers.Get("Origin"); origin != "" && header.Get("Access-Control-Allow-Origin") == "" {
		// A cross-origin EventSource reads the stream only with CORS. The handler has
		// accepted this origin (an origin check refuses others before this point), so
		// its page may read what it would read over a WebSocket.
		head.WriteString("Access-Control-Allow-Origin: " + headerSafe.Replace(origin) + "\r\n" +
			"Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n")
	}
	for k, vs := range header {
		for _, v := range vs {
			head.WriteString(k + ": " + headerSafe.Replace(v) + "\r\n")
		}
	}
	head.WriteString("\r\n")

	out := []byte(head.String())
	for _, f := range c.takeOutbox() {
		out = w.appendFrame(out, f)
	}
	err := s.write(out)
	c.observeOpen(err)
	if err != nil {
		c.openFailed(raw, err)
		return nil
	}
	return w
}

// serveStream runs an event stream until the client goes away. The client sends
// nothing after its request; the read only notices the socket closing, and a client
// that sends more than ReadLimit bytes anyway is cut off.
func (c *conn) serveStream(w *sseWire) {
	c.run(w, func() int {
		n, _ := io.Copy(io.Discard, io.LimitReader(w.s.Conn, c.srv.opts.ReadLimit+1))
		if n > c.srv.opts.ReadLimit {
			return canal.CloseMessageTooBig
		}
		// EventSource.close(), a closed tab, a network drop: the client went away.
		return canal.CloseGoingAway
	})
}
