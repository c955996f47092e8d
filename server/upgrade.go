package server

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"

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

// writeBuffers lends write buffers to sockets only while they write a message.
type writeBuffers struct{ p sync.Pool }

func (w *writeBuffers) Get() any  { return w.p.Get() }
func (w *writeBuffers) Put(v any) { w.p.Put(v) }
