package server_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/server"
)

// dialStatus dials a socket (or, with stream, an event stream) and returns the
// handshake's HTTP status: 101 or 200 when it was accepted.
func dialStatus(t *testing.T, s *canaltest.Server, path string, stream bool, opts canaltest.DialOptions) int {
	t.Helper()
	var err error
	if stream {
		var es *canaltest.EventStream
		if es, err = canaltest.DialEvents(ctxT(t), s.HTTPURL(path), opts); err == nil {
			es.Close()
			return http.StatusOK
		}
	} else {
		var c *canaltest.Communicator
		if c, err = canaltest.Dial(ctxT(t), s.URL(path), opts); err == nil {
			c.Abort()
			return http.StatusSwitchingProtocols
		}
	}
	var he *canaltest.HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("dial %s: %v", path, err)
	}
	return he.Status
}

// TestOriginCheckedByDefault: without any origin middleware, a handshake from another
// site's page is refused with 403 before the handler runs, for sockets and event
// streams alike; the request's own origin and requests without Origin pass.
func TestOriginCheckedByDefault(t *testing.T) {
	t.Parallel()
	o := sseOptions()
	s := canaltest.NewServer(t, newEchoHandler(), o)
	_, port, _ := net.SplitHostPort(s.Addr)
	tests := []struct {
		name   string
		origin string
		ok     bool
	}{
		{"same origin", "http://" + s.Addr, true},
		{"same origin, https page behind a TLS proxy", "https://" + s.Addr, true},
		{"same origin, scheme and host in capitals", "HTTP://" + strings.ToUpper(s.Addr), true},
		{"no Origin: not a browser", "", true},
		{"other host", "http://evil.example", false},
		{"other port", "http://127.0.0.1:1", false},
		{"same port, other name for the host", "http://localhost:" + port, false},
		{"null", "null", false},
		{"suffix trick, dot", "https://127.0.0.1.evil.com", false},
		{"suffix trick, dot after port", "http://" + s.Addr + ".evil.com", false},
		{"prefix trick", "https://evil-127.0.0.1", false},
		{"user info", "http://evil.example@" + s.Addr, false},
		{"scheme other than http(s)", "ws://" + s.Addr, false},
		{"file page", "file://" + s.Addr, false},
		{"trailing dot", "http://127.0.0.1.:" + port, false},
		{"path", "http://" + s.Addr + "/", false},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tt.name, stream), func(t *testing.T) {
				t.Parallel()
				got := dialStatus(t, s, "/ws/", stream, canaltest.DialOptions{Origin: tt.origin})
				refused := got == http.StatusForbidden
				if accepted := got == http.StatusSwitchingProtocols || got == http.StatusOK; !accepted && !refused {
					t.Fatalf("origin %q: HTTP %d, want 403 or accepted", tt.origin, got)
				}
				if refused == tt.ok {
					t.Fatalf("origin %q: HTTP %d, want ok=%v", tt.origin, got, tt.ok)
				}
			})
		}
	}
	t.Run("two Origin headers", func(t *testing.T) {
		t.Parallel()
		h := http.Header{"Origin": {"http://" + s.Addr, "http://evil.example"}}
		if got := dialStatus(t, s, "/ws/", false, canaltest.DialOptions{Header: h}); got != http.StatusForbidden {
			t.Fatalf("HTTP %d, want 403", got)
		}
	})
}

// TestOriginsOption: Options.Origins lets listed origins through, with middleware.Origin's
// pattern syntax, plus "null" when named; the request's own origin still passes.
func TestOriginsOption(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.Origins = []string{"https://app.example.com", ".example.org", "*.example.net", "http://localhost:8000", "[::1]", "null"}
	s := canaltest.NewServer(t, newEchoHandler(), o)
	tests := []struct {
		origin string
		ok     bool
	}{
		{"http://" + s.Addr, true},
		{"https://app.example.com", true},
		{"https://app.example.com:443", true},
		{"http://app.example.com", false},
		{"https://app.example.com:8443", false},
		{"https://example.org", true},
		{"http://a.b.example.org:9000", true},
		{"https://evil-example.org", false},
		{"https://example.net", false},
		{"https://www.example.net", true},
		{"http://localhost:8000", true},
		{"http://localhost:8001", false},
		{"http://[0:0::1]:3000", true},
		{"null", true},
		{"https://evil.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			t.Parallel()
			got := dialStatus(t, s, "/", false, canaltest.DialOptions{Origin: tt.origin})
			if (got == http.StatusSwitchingProtocols) != tt.ok || (!tt.ok && got != http.StatusForbidden) {
				t.Fatalf("origin %q: HTTP %d, want ok=%v", tt.origin, got, tt.ok)
			}
		})
	}
}

// TestInsecureSkipOriginCheck: with the check off every origin reaches the handler.
func TestInsecureSkipOriginCheck(t *testing.T) {
	t.Parallel()
	o := fastOptions()
	o.InsecureSkipOriginCheck = true
	s := canaltest.NewServer(t, newEchoHandler(), o)
	for _, origin := range []string{"http://evil.example", "null", "https://127.0.0.1.evil.com", "garbage"} {
		if got := dialStatus(t, s, "/", false, canaltest.DialOptions{Origin: origin}); got != http.StatusSwitchingProtocols {
			t.Errorf("origin %q: HTTP %d, want 101", origin, got)
		}
	}
}

// TestOriginsValidated: a pattern that could never match is an error of New.
func TestOriginsValidated(t *testing.T) {
	t.Parallel()
	for _, pattern := range []string{"", "https://example.com/path", "https://example.com?q", "example.*.com",
		"http://example.com:99999", "http://example.com:0", "::1", "[::1", "user@example.com", "1http://x"} {
		_, err := server.New(newEchoHandler(), server.Options{Origins: []string{"example.com", pattern}})
		if !errors.Is(err, server.ErrOptions) || !strings.Contains(err.Error(), strconv.Quote(pattern)) {
			t.Errorf("Origins %q: New returned %v, want ErrOptions naming the pattern", pattern, err)
		}
	}
	if _, err := server.New(newEchoHandler(), server.Options{Origins: []string{"*", "null", "HTTPS://Example.COM/", "[::1]:8000"}}); err != nil {
		t.Errorf("valid patterns: %v", err)
	}
}

// TestOriginRefusalLog: refusals are logged at most about once a second, the next
// line counting those held back, say what to configure, and never show the query string.
func TestOriginRefusalLog(t *testing.T) {
	t.Parallel()
	var logs canaltest.LogBuffer
	o := fastOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := canaltest.NewServer(t, newEchoHandler(), o)
	const secret = "ticket=s3cr3t-t1cket"
	start := time.Now()
	const burst = 20
	for range burst {
		if got := dialStatus(t, s, "/ws/room/?"+secret, false, canaltest.DialOptions{Origin: "https://evil.example"}); got != http.StatusForbidden {
			t.Fatalf("HTTP %d, want 403", got)
		}
	}
	elapsed := time.Since(start)
	lines := logs.Lines("refused")
	if max := int(elapsed/time.Second) + 1; len(lines) < 1 || len(lines) > max {
		t.Fatalf("%d refusals in %v logged %d lines, want 1 to %d:\n%s", burst, elapsed, len(lines), max, logs.String())
	}
	want := `canal: origin \"https://evil.example\" refused: not the request's host \"` + s.Addr + `\"; allow it with server.Options.Origins`
	if !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "path=/ws/room/") {
		t.Fatalf("log line %s\nwant it to contain %s and the path", lines[0], want)
	}
	time.Sleep(1100 * time.Millisecond) // past the last line's second
	if got := dialStatus(t, s, "/ws/room/?"+secret, false, canaltest.DialOptions{Origin: "https://evil.example"}); got != http.StatusForbidden {
		t.Fatalf("HTTP %d, want 403", got)
	}
	lines = logs.Lines("refused")
	held := 0
	for _, l := range lines {
		if m := regexp.MustCompile(` suppressed=(\d+)`).FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			held += n
		}
	}
	if held+len(lines) != burst+1 {
		t.Fatalf("%d lines and %d held back, want %d refusals in all:\n%s", len(lines), held, burst+1, logs.String())
	}
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Fatalf("the query string was logged:\n%s", logs.String())
	}
}
