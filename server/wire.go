package server

import (
	"encoding/binary"
	"strconv"

	"github.com/canal-rt/canal"
)

// transport is the protocol a connection speaks; the handshake picks it from the
// request.
type transport uint8

const (
	transportWebSocket transport = iota
	transportSSE
)

// scopeType is Scope.Type for connections of t.
func (t transport) scopeType() string {
	if t == transportSSE {
		return ScopeTypeSSE
	}
	return "websocket"
}

// wire encodes a connection's output for its transport: WebSocket frames (wsWire) or a
// Server-Sent Events stream (sseWire). The writer adds what is due to one write (vec)
// and hands it to the socket (sock) in one system call. Encoders only append: they are
// called by the connection's writer, one call at a time.
type wire interface {
	// addFrame adds f's encoding to v.
	addFrame(v *vec, f canal.Frame)
	// appendPing appends a keepalive.
	appendPing(dst []byte) []byte
	// appendClose appends the last thing the peer gets: a close frame, or a "close"
	// event.
	appendClose(dst []byte, code int, reason string) []byte
	// closed runs once the close was handed to the socket: a WebSocket waits
	// CloseTimeout for the peer's answer, a stream ends.
	closed()
	// sock is the socket's write side.
	sock() *sock
}

// wsWire speaks WebSocket (RFC 6455) on an upgraded socket. Server frames are not
// masked and Canal does not compress, so a frame is a 2- to 10-byte header and the
// data: encoding it here saves the library's per-message allocation and lets a batch
// of frames go out in one system call.
type wsWire struct {
	s       *sock
	sniff   *frameSniffer
	closing func() // arms the read deadline for the peer's close answer
}

func (w *wsWire) appendFrame(dst []byte, f canal.Frame) []byte {
	return append(appendWSHeader(dst, opcode(f), len(f.Data)), f.Data...)
}

// addFrame adds the header, and the data by reference when it is large: f.Data is not
// modified once sent (canal.Frame), and often shared by a whole group.
func (w *wsWire) addFrame(v *vec, f canal.Frame) {
	v.buf = appendWSHeader(v.buf, opcode(f), len(f.Data))
	v.addPayload(f.Data)
}

// opcode is f's WebSocket opcode: text or binary.
func opcode(f canal.Frame) byte {
	if f.Binary {
		return 0x2
	}
	return 0x1
}

func appendWSHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op) // FIN
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// appendPing appends a ping with no payload.
func (w *wsWire) appendPing(dst []byte) []byte { return append(dst, 0x89, 0x00) }

func (w *wsWire) appendClose(dst []byte, code int, reason string) []byte {
	dst = appendWSHeader(dst, 0x8, 2+len(reason))
	return append(binary.BigEndian.AppendUint16(dst, uint16(code)), reason...)
}

func (w *wsWire) closed()     { w.closing() }
func (w *wsWire) sock() *sock { return w.s }

// sseWire writes frames as events: each line of a frame becomes a "data:" line, and a
// blank line ends the event. Pings are comment lines. Close sends a last event named
// "close" whose data is {"code": C, "reason": "..."}, then the socket is closed: a
// browser's EventSource would otherwise reconnect at once.
type sseWire struct{ s *sock }

func (w *sseWire) appendFrame(dst []byte, f canal.Frame) []byte {
	return append(dst, lastEvent.encode(f.Data)...)
}

// addFrame copies: an event's data is rewritten line by line.
func (w *sseWire) addFrame(v *vec, f canal.Frame) { v.buf = w.appendFrame(v.buf, f) }

var ssePing = []byte(": ping\n\n")

func (w *sseWire) appendPing(dst []byte) []byte { return append(dst, ssePing...) }

func (w *sseWire) appendClose(dst []byte, code int, reason string) []byte {
	data := `{"code":` + strconv.Itoa(code) + `,"reason":` + strconv.Quote(reason) + `}`
	return append(dst, encodeEvent("close", []byte(data))...)
}

// closed ends the stream once the close event is out: there is no close handshake,
// and the read loop ends when the socket closes.
func (w *sseWire) closed()     { w.s.closeWhenWritten() }
func (w *sseWire) sock() *sock { return w.s }
