package server

import (
	"bufio"
	"encoding/binary"
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
	w := &wsWire{s: s, sniff: &frameSniffer{sock: s}}
	// The library gets the sniffer as its connection: it resets the reader it is
	// handed onto that connection.
	ws, err := c.srv.upgrader.Upgrade(&hijacker{conn: w.sniff, br: bufio.NewReaderSize(w.sniff, c.srv.opts.ReadBufferSize)}, req, header)
	if err == nil {
		for _, f := range c.takeOutbox() {
			out = w.appendFrame(out, f)
		}
	}
	if werr := s.endCapture(); err == nil {
		err = werr
	}
	c.observeOpen(err)
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
	ws.SetCloseHandler(func(code int, _ string) error {
		if code == fws.CloseNoStatusReceived && w.sniff.shortClose {
			// A 1-byte close body is malformed (RFC 6455 5.5.1); the library reads it
			// as "no status" and would echo an empty close.
			code = fws.CloseProtocolError
		}
		// Echo the close unless ours went out first: the peer's close is then the
		// answer, and a second close frame is a protocol error to browsers.
		c.mu.Lock()
		sent := c.closeSent
		c.closeSent = true
		c.mu.Unlock()
		if !sent {
			_ = ws.WriteControl(fws.CloseMessage, fws.FormatCloseMessage(code, ""), time.Now().Add(o.WriteTimeout))
		}
		return nil
	})
	c.run(w, func() int {
		code := c.readLoop(ws, alive)
		if code == fws.CloseNoStatusReceived && w.sniff.shortClose {
			code = fws.CloseProtocolError
		}
		return code
	})
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
		c.srv.stats.received.Add(1)
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

// frameSniffer watches the client's frame headers go by on their way to the websocket
// library, for the one thing the library hides: a close frame whose body is a single
// byte (malformed; the library reports it as a close without status). It reads
// headers only and skips payloads, so it costs a few comparisons per read.
//
// Concurrency: used by the read loop's goroutine only.
type frameSniffer struct {
	*sock
	hdr        [14]byte
	n          int    // header bytes seen so far
	skip       uint64 // payload bytes left in the current frame
	shortClose bool   // a close frame with a 1-byte body went by
}

func (f *frameSniffer) Read(p []byte) (int, error) {
	n, err := f.sock.Read(p)
	f.scan(p[:n])
	return n, err
}

func (f *frameSniffer) scan(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(uint64(len(b)), f.skip)
			b, f.skip = b[k:], f.skip-k
			continue
		}
		f.hdr[f.n] = b[0]
		f.n++
		b = b[1:]
		if f.n < 2 {
			continue
		}
		need, l7 := 2, f.hdr[1]&0x7f
		switch l7 {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if f.hdr[1]&0x80 != 0 {
			need += 4 // the mask key
		}
		if f.n < need {
			continue
		}
		length := uint64(l7)
		switch l7 {
		case 126:
			length = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
		case 127:
			length = binary.BigEndian.Uint64(f.hdr[2:10])
		}
		if f.hdr[0]&0x0f == 0x8 && length == 1 {
			f.shortClose = true
		}
		f.skip, f.n = length, 0
	}
}
