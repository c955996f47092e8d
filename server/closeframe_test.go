package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// rawUpgrade opens a WebSocket by hand, for frames no client library sends.
func rawUpgrade(t *testing.T, s *canaltest.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: "+s.Addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	return nc, br
}

// maskedFrame is a client frame (masked with a zero key, which leaves the payload as is).
func maskedFrame(opcode byte, payload []byte) []byte {
	return append([]byte{0x80 | opcode, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
}

// TestCloseFrameBodies: the server answers a client's close frame with the client's
// code, and a malformed one (a 1-byte body) with 1002, as RFC 6455 asks; Disconnect
// gets the same code.
func TestCloseFrameBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     []byte
		wantEcho []byte // the close frame's body the server sends back
		wantDisc int
	}{
		{"code 1000", []byte{0x03, 0xe8}, []byte{0x03, 0xe8}, 1000},
		{"code 4001 with reason", []byte{0x0f, 0xa1, 'b', 'y', 'e'}, []byte{0x0f, 0xa1}, 4001},
		{"no body", nil, nil, canal.CloseNoStatus},
		{"1-byte body", []byte{0x03}, []byte{0x03, 0xea}, canal.CloseProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			s := canaltest.NewServer(t, p, fastOptions())
			nc, br := rawUpgrade(t, s)
			// A text frame first: the sniffer must skip payloads to find the close.
			if _, err := nc.Write(append(maskedFrame(0x1, []byte("hello")), maskedFrame(0x8, tt.body)...)); err != nil {
				t.Fatal(err)
			}
			for {
				var h [2]byte
				if _, err := io.ReadFull(br, h[:]); err != nil {
					t.Fatalf("no close frame back: %v", err)
				}
				body := make([]byte, h[1]&0x7f)
				if _, err := io.ReadFull(br, body); err != nil {
					t.Fatal(err)
				}
				if h[0]&0x0f != 0x8 {
					continue // the echo of "hello"
				}
				if string(body) != string(tt.wantEcho) {
					code := 0
					if len(body) >= 2 {
						code = int(binary.BigEndian.Uint16(body))
					}
					t.Fatalf("close body %x (code %d), want %x", body, code, tt.wantEcho)
				}
				break
			}
			if got := p.waitDisconnect(t); got != tt.wantDisc {
				t.Fatalf("Disconnect(%d), want %d", got, tt.wantDisc)
			}
		})
	}
}

// TestServerCloseIsSentOnce: when the server closes first, the client's answering close
// frame gets no second close back (Chromium fails the socket with "Close received
// after close" if it does).
func TestServerCloseIsSentOnce(t *testing.T) {
	t.Parallel()
	p := newProbe()
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error { return c.Close(4123, "bye") }
	s := canaltest.NewServer(t, p, fastOptions())
	nc, br := rawUpgrade(t, s)
	if _, err := nc.Write(maskedFrame(0x1, []byte("close me"))); err != nil {
		t.Fatal(err)
	}
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil || h[0] != 0x88 {
		t.Fatalf("first frame %x, %v; want a close", h, err)
	}
	body := make([]byte, h[1]&0x7f)
	if _, err := io.ReadFull(br, body); err != nil || binary.BigEndian.Uint16(body) != 4123 {
		t.Fatalf("close body %x, %v", body, err)
	}
	if _, err := nc.Write(maskedFrame(0x8, body[:2])); err != nil {
		t.Fatal(err)
	}
	if n, err := br.Read(h[:]); err != io.EOF {
		t.Fatalf("after the close handshake: %d more bytes (%x), %v; want EOF", n, h[:n], err)
	}
	if got := p.waitDisconnect(t); got != 4123 {
		t.Fatalf("Disconnect(%d), want 4123", got)
	}
}
