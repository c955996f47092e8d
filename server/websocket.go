package server

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"
	"unicode/utf8"

	fws "github.com/fasthttp/websocket"

	"github.com/canal-rt/canal"
)

// The WebSocket transport: the upgrade, and the read loop of an upgraded socket.
// Writes go through the connection's writer and sock (writer.go, sock.go); the
// library only reads, and answers pings and close frames through sock.

// upgrade answers 101 on the socket fasthttp handed over, with the frames Connect
// queued (a greeting, usually) in the same system call. On failure it closes the
// socket, ends the connection and returns nil.
func (c *conn) upgrade(raw net.Conn, req *http.Request, header http.Header) (*fws.Conn, *wsWire) {
	s := c.newSock(raw)
	var out []byte
	s.beginCapture(&out)
	ws, err := c.srv.upgrader.Upgrade(&hijacker{conn: s, br: bufio.NewReaderSize(s, c.srv.opts.ReadBufferSize)}, req, header)
	w := &wsWire{s: s}
	if err == nil {
		for _, f := range c.takeOutbox() {
			out = w.appendFrame(out, f)
		}
	}
	if werr := s.endCapture(); err == nil {
		err = werr
	}
	if err != nil {
		c.openFailed(raw, err)
		return nil, nil
	}
	w.closing = func() { _ = ws.SetReadDeadline(time.Now().Add(c.srv.opts.CloseTimeout)) }
	return ws, w
}

// serve runs an upgraded WebSocket until it ends.
func (c *conn) serve(ws *fws.Conn, w *wsWire) {
	o := c.srv.opts
	ws.SetReadLimit(o.ReadLimit)
	alive := func() { _ = ws.SetReadDeadline(time.Now().Add(o.PingInterval + o.PongTimeout)) }
	alive()
	ws.SetPongHandler(func(string) error { alive(); return nil })
	c.run(w, func() int { return c.readLoop(ws, alive) })
}

// readLoop reads client frames into the inbox until the socket ends, and returns the
// close code the client gave (1005 none, 1006 dropped, 1009 too big).
func (c *conn) readLoop(ws *fws.Conn, alive func()) int {
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			var ce *fws.CloseError
			switch {
			case errors.As(err, &ce):
				return ce.Code
			case errors.Is(err, fws.ErrReadLimit):
				// The library has sent the 1009 close frame itself.
				c.mu.Lock()
				if c.state == stateAccepted {
					c.closeSent = true
					c.closeLocked(canal.CloseMessageTooBig, "")
				}
				c.mu.Unlock()
				return canal.CloseMessageTooBig
			default:
				return canal.CloseAbnormal
			}
		}
		alive()
		f := canal.Frame{Binary: typ == fws.BinaryMessage, Data: data}
		if !f.Binary && !utf8.Valid(data) {
			c.closeWith(canal.CloseInvalidPayload, "invalid UTF-8")
			continue
		}
		c.mu.Lock()
		for c.frames >= c.srv.opts.FrameQueue && c.state == stateAccepted {
			c.space.Wait()
		}
		if c.state == stateAccepted {
			c.frames++
			c.inbox = append(c.inbox, item{kind: kindFrame, frame: f})
			c.kickWorker()
		}
		c.mu.Unlock()
	}
}
