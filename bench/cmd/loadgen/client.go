package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/redis/rueidis"
)

// The ticket contract of python/README.md, written here without Canal's packages so
// that the load generator is neutral: 43-character base64url tickets, key
// "canal:ticket:" + sha256 hex, value {"id": n, "username": "..."}.
const ticketPrefix = "canal:ticket:"

// ticketTTL is long enough for the slowest server to reach every ticket of a cell.
const ticketTTL = 600 * time.Second

func newTicket() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func ticketKey(t string) string {
	sum := sha256.Sum256([]byte(t))
	return ticketPrefix + hex.EncodeToString(sum[:])
}

func newRedis(redisURL string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	opt.DisableCache = true
	return rueidis.NewClient(opt)
}

// issueTickets stores n fresh tickets in Redis, as Django's ticket view would, and
// returns them. Users are named prefix + index.
func issueTickets(ctx context.Context, rc rueidis.Client, n int, prefix string) ([]string, error) {
	const batch = 1000
	out := make([]string, 0, n)
	cmds := make(rueidis.Commands, 0, batch)
	for i := 0; i < n; i++ {
		t := newTicket()
		out = append(out, t)
		value := `{"id":` + strconv.Itoa(i+1) + `,"username":"` + prefix + strconv.Itoa(i) + `"}`
		cmds = append(cmds, rc.B().Set().Key(ticketKey(t)).Value(value).Nx().
			ExSeconds(int64(ticketTTL/time.Second)).Build())
		if len(cmds) == batch || i == n-1 {
			for _, r := range rc.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					return nil, fmt.Errorf("issue tickets: %w", err)
				}
			}
			cmds = cmds[:0]
		}
	}
	return out, nil
}

// contract is the server's side of the wire. The benchmark's contract
// (bench/README.md, "What is compared") greets each accepted socket with
// {"type":"hello",…}, echoes client objects and wraps each group message as
// {"type":"group","seq","ts","text"}. The canal binary (cmd/canal, server canal-bin)
// configured for the benchmark (bench/servers/canalbin/canal.toml) cannot do all of
// that: it greets nobody (its 101 is the acceptance, and it joins its groups before
// answering it), sends each group message as the message's own JSON,
// {"type":"bench.message","seq","ts","text"}, and has no echo. Each difference is
// named here rather than loosened in the checks, so that the other servers are held
// to the full contract.
type contract struct {
	name      string
	greeting  bool   // an accepted socket's first frame is {"type":"hello",…}
	groupType string // the "type" of a group message's frame
	echo      bool   // client objects come back as they are (W4)
}

var contracts = map[string]contract{
	"bench":  {name: "bench", greeting: true, groupType: "group", echo: true},
	"binary": {name: "binary", greeting: false, groupType: "bench.message", echo: false},
}

// parseContract returns the contract called name: "bench" (the default) or "binary".
func parseContract(name string) (contract, error) {
	c, ok := contracts[name]
	if !ok {
		return contract{}, fmt.Errorf("-contract %q: want bench or binary", name)
	}
	return c, nil
}

// dialer opens benchmark sockets, optionally from a given loopback source address
// (each load-generator process uses its own, so that 19,000 sockets never run short of
// ephemeral ports).
type dialer struct {
	base string // ws://host:port/ws/bench/
	ws   websocket.Dialer
	nd   *net.Dialer
	host string // host:port
	path string // /ws/bench/
	wire contract
}

func newDialer(base, src string, timeout time.Duration, wire contract) (*dialer, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "ws") || u.Host == "" {
		return nil, fmt.Errorf("bad URL %q (want ws://host:port/path/)", base)
	}
	nd := &net.Dialer{Timeout: timeout}
	if src != "" {
		ip := net.ParseIP(src)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("source address %q is not a loopback address", src)
		}
		nd.LocalAddr = &net.TCPAddr{IP: ip}
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, fmt.Errorf("target %q is not a loopback address: the benchmark stays on this machine", u.Host)
	}
	return &dialer{
		nd:   nd,
		wire: wire,
		host: u.Host,
		path: u.EscapedPath(),
		base: base,
		ws: websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: timeout,
			ReadBufferSize:   1024,
			WriteBufferSize:  512,
		},
	}, nil
}

// errRefused is a handshake answered with an HTTP status instead of 101.
type errRefused struct{ status int }

func (e errRefused) Error() string { return "handshake refused: HTTP " + strconv.Itoa(e.status) }

// connect opens an authenticated socket and waits for the server's greeting, which
// proves the ticket was consumed, the group joined and the socket accepted (under the
// binary contract the 101 itself proves it: the binary joins before it answers).
func (d *dialer) connect(ctx context.Context, ticket string, timeout time.Duration) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, resp, err := d.ws.DialContext(ctx, d.base+"?ticket="+ticket, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, errRefused{resp.StatusCode}
		}
		return nil, err
	}
	if !d.wire.greeting {
		return c, nil
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	_, msg, err := c.ReadMessage()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("waiting for the greeting: %w", err)
	}
	if !typeIs(msg, "hello") {
		c.Close()
		return nil, fmt.Errorf("first message is not the greeting: %.80q", msg)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// handshake is connect without a WebSocket library, for w1: one write of the upgrade
// request, the 101 read and the greeting frame read from a small buffer, then a TCP
// reset. The client side of a handshake then costs a fraction of a library's, so
// that the load generator's core runs out long after the server's. It checks what
// proves the handshake: status 101 and a text frame that is the greeting (under the
// binary contract, which has no greeting, the 101).
func (d *dialer) handshake(ctx context.Context, ticket string, timeout time.Duration, buf []byte) error {
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := d.nd.DialContext(ctx, "tcp", d.host)
	if err != nil {
		return err
	}
	defer func() {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
	}()
	_ = conn.SetDeadline(deadline)
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return err
	}
	req := buf[:0]
	req = append(req, "GET "...)
	req = append(req, d.path...)
	req = append(req, "?ticket="...)
	req = append(req, ticket...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, d.host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	req = base64.StdEncoding.AppendEncode(req, key[:])
	req = append(req, "\r\n\r\n"...)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	// Read until the end of the headers, then until one whole frame follows them.
	n, hdrEnd := 0, -1
	for {
		if n == len(buf) {
			return errors.New("handshake response too large")
		}
		m, err := conn.Read(buf[n:])
		n += m
		if hdrEnd < 0 {
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
				hdrEnd = i + 4
				if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
					status := 0
					if len(buf) >= 12 {
						status, _ = strconv.Atoi(string(buf[9:12]))
					}
					return errRefused{status}
				}
				if !d.wire.greeting {
					return nil
				}
			}
		}
		if hdrEnd >= 0 {
			if f, ok := frame(buf[hdrEnd:n]); ok {
				if !typeIs(f, "hello") {
					return fmt.Errorf("first message is not the greeting: %.80q", f)
				}
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// frame returns the payload of the complete unmasked text frame at the start of b.
func frame(b []byte) ([]byte, bool) {
	if len(b) < 2 {
		return nil, false
	}
	if b[0]&0x0f != 1 || b[1]&0x80 != 0 {
		return b, true // not a text frame: typeIs rejects it
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return nil, false
		}
		n, h = int(b[2])<<8|int(b[3]), 4
	case 127:
		return b, true // an 8-byte length is no greeting
	}
	if len(b) < h+n {
		return nil, false
	}
	return b[h : h+n], true
}

// closeNormally sends a close frame (1000) and closes the socket.
func closeNormally(c *websocket.Conn) {
	_ = c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.Close()
}

// errKind names an error for the counts in the results.
func errKind(err error) string {
	var r errRefused
	var ne net.Error
	switch {
	case errors.As(err, &r):
		return "http_" + strconv.Itoa(r.status)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	default:
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return "close_" + strconv.Itoa(ce.Code)
		}
		return "other"
	}
}

// The servers answer JSON objects whose fields the load generator reads without a
// full decode (Python writes `"seq": 1`, Go `"seq":1`): cheap enough that the client
// core is spent on sockets, not on parsing.

// field returns the raw value bytes that follow "key": in b.
func field(b []byte, key string) []byte {
	var pat [32]byte
	p := append(append(append(pat[:0], '"'), key...), '"')
	for off := 0; ; {
		i := bytes.Index(b[off:], p)
		if i < 0 {
			return nil
		}
		j := off + i + len(p)
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j < len(b) && b[j] == ':' {
			j++
			for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
				j++
			}
			return b[j:]
		}
		off = j
	}
}

// intField parses the integer value of key; a number that is not a whole integer
// (1.5, 1e+18) is no value.
func intField(b []byte, key string) (int64, bool) {
	v := field(b, key)
	if len(v) == 0 {
		return 0, false
	}
	neg := false
	if v[0] == '-' {
		neg, v = true, v[1:]
	}
	var n int64
	i := 0
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		n = n*10 + int64(v[i]-'0')
	}
	if i == 0 || (i < len(v) && !strings.ContainsRune(",}] \t\r\n", rune(v[i]))) {
		return 0, false // not a whole integer: 1.7e+18 must not read as 1
	}
	if neg {
		n = -n
	}
	return n, true
}

// typeIs reports whether the object's "type" is t.
func typeIs(b []byte, t string) bool {
	v := field(b, "type")
	return len(v) >= len(t)+2 && v[0] == '"' && string(v[1:1+len(t)]) == t && v[1+len(t)] == '"'
}
