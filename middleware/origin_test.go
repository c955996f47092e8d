package middleware_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/middleware"
)

// checkOrigins runs each origin header (or none for "<none>") through an Origin
// middleware built from allowed and compares with want (true: next ran; false: 403).
func checkOrigins(t *testing.T, mw canal.Middleware, cases map[string]bool) {
	t.Helper()
	for origin, want := range cases {
		t.Run(origin, func(t *testing.T) {
			t.Parallel()
			next := &okHandler{}
			var c *fakeConn
			if origin == "<none>" {
				c = originConn()
			} else {
				c = originConn(origin)
			}
			sess, err := mw(next).Connect(context.Background(), c)
			if want {
				if err != nil || sess == nil || next.Calls() != 1 {
					t.Fatalf("origin %q: want allowed, got session %v, err %v, next calls %d", origin, sess, err, next.Calls())
				}
				return
			}
			var rej *canal.RejectError
			if !errors.As(err, &rej) || rej.Status != http.StatusForbidden {
				t.Fatalf("origin %q: want *canal.RejectError 403, got %v", origin, err)
			}
			if sess != nil || next.Calls() != 0 {
				t.Fatalf("origin %q: refused but session %v, next calls %d", origin, sess, next.Calls())
			}
		})
	}
}

func mustOrigin(t testing.TB, allowed ...string) canal.Middleware {
	t.Helper()
	mw, err := middleware.Origin(allowed...)
	if err != nil {
		t.Fatalf("Origin(%q): %v", allowed, err)
	}
	return mw
}

// TestOriginSpecMatrix is the matrix verified against Channels 4.0.0 + Daphne 4.0.0
// (spec/channels-behaviour.md), case for case.
func TestOriginSpecMatrix(t *testing.T) {
	t.Parallel()
	mw := mustOrigin(t, "http://allowed.com", ".example.com", "https://secure.com:8443")
	checkOrigins(t, mw, map[string]bool{
		"<none>":                      false,
		"http://allowed.com":          true,
		"http://allowed.com:80":       true,
		"http://ALLOWED.com":          true,
		"https://allowed.com":         false,
		"http://allowed.com:8080":     false,
		"http://example.com":          true,
		"http://sub.example.com":      true,
		"https://a.b.example.com:444": true,
		"http://evil-example.com":     false,
		"https://secure.com:8443":     true,
		"https://secure.com":          false,
		"null":                        false,
	})
}

func TestOriginSchemelessPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		cases   map[string]bool
	}{
		{"exact host ignores scheme and port", []string{"example.com"}, map[string]bool{
			"http://example.com":             true,
			"https://example.com:8443":       true,
			"ws://EXAMPLE.COM":               true,
			"chrome-extension://example.com": true,
			"http://sub.example.com":         false,
			"http://example.com.evil":        false,
			"http://notexample.com":          false,
			"example.com":                    false, // no scheme: no host to compare, as in Channels
			"<none>":                         false,
		}},
		{"leading dot", []string{".Example.COM"}, map[string]bool{
			"http://example.com":      true,
			"https://a.example.com":   true,
			"https://a.b.example.com": true,
			"http://evil-example.com": false,
			"http://example.com.evil": false,
			"http://.example.com":     false, // empty label: malformed
		}},
		// Channels never matches "localhost:8000" (urlparse reads "localhost" as the
		// scheme); ours treats the port of a scheme-less pattern as ignored, like
		// Channels does for "127.0.0.1:8000".
		{"localhost with port", []string{"localhost:8000"}, map[string]bool{
			"http://localhost:8000":     true,
			"http://localhost":          true,
			"https://localhost:3000":    true,
			"http://localhost.evil.com": false,
			"http://127.0.0.1:8000":     false,
			"localhost:8000":            false,
		}},
		{"ip with port", []string{"127.0.0.1:8000"}, map[string]bool{
			"http://127.0.0.1:8000": true,
			"http://127.0.0.1:9999": true,
			"http://127.0.0.1":      true,
			"http://127.0.0.2:8000": false,
		}},
		{"trailing slash is tolerated", []string{"https://example.com/"}, map[string]bool{
			"https://example.com":  true,
			"https://example.com/": true,
			"http://example.com":   false,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkOrigins(t, mustOrigin(t, tt.allowed...), tt.cases)
		})
	}
}

func TestOriginSchemedPorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		cases   map[string]bool
	}{
		{"explicit default port", []string{"https://secure.com:443"}, map[string]bool{
			"https://secure.com":      true,
			"https://secure.com:443":  true,
			"HTTPS://SECURE.COM":      true,
			"https://secure.com:8443": false,
			"wss://secure.com":        false, // the scheme must be equal
			"http://secure.com:443":   false,
		}},
		{"ws and wss defaults", []string{"ws://a.com", "wss://b.com"}, map[string]bool{
			"ws://a.com:80":   true,
			"http://a.com":    false,
			"wss://b.com:443": true,
			"wss://b.com:444": false,
		}},
		{"empty origin port means default", []string{"http://a.com"}, map[string]bool{
			"http://a.com:":      true,
			"http://a.com:0080":  true,
			"http://a.com:99999": false,
			"http://a.com:8x":    false,
		}},
		{"scheme without default port", []string{"chrome-extension://abcdef"}, map[string]bool{
			"chrome-extension://abcdef":      true,
			"chrome-extension://abcdef:1234": false,
			"moz-extension://abcdef":         false,
		}},
		{"schemed leading dot", []string{"https://.example.com"}, map[string]bool{
			"https://example.com":     true,
			"https://x.example.com":   true,
			"http://x.example.com":    false,
			"https://x.example.com:1": false,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkOrigins(t, mustOrigin(t, tt.allowed...), tt.cases)
		})
	}
}

func TestOriginIPv6(t *testing.T) {
	t.Parallel()
	t.Run("host only", func(t *testing.T) {
		t.Parallel()
		checkOrigins(t, mustOrigin(t, "[::1]"), map[string]bool{
			"http://[::1]":          true,
			"http://[::1]:8000":     true,
			"https://[0:0::1]:443":  true, // compared as addresses
			"http://[::2]":          false,
			"http://::1":            false, // unbracketed: malformed
			"http://[::1":           false,
			"http://[127.0.0.1]":    false,
			"http://[fe80::1%25lo]": false,
		})
	})
	t.Run("schemed with port", func(t *testing.T) {
		t.Parallel()
		checkOrigins(t, mustOrigin(t, "http://[2001:DB8::1]:8000"), map[string]bool{
			"http://[2001:db8::1]:8000":           true,
			"http://[2001:0db8:0:0:0:0:0:1]:8000": true,
			"http://[2001:db8::1]":                false,
			"https://[2001:db8::1]:8000":          false,
		})
	})
}

func TestOriginStar(t *testing.T) {
	t.Parallel()
	for _, allowed := range [][]string{{"*"}, {"http://allowed.com", "*"}} {
		t.Run(strings.Join(allowed, ","), func(t *testing.T) {
			t.Parallel()
			checkOrigins(t, mustOrigin(t, allowed...), map[string]bool{
				"<none>":             true,
				"null":               true,
				"http://anything.io": true,
				"not an origin":      true,
			})
		})
	}
}

// "*.example.com" never matches in Channels; ours is a wildcard for subdomains only.
func TestOriginSubdomainWildcard(t *testing.T) {
	t.Parallel()
	t.Run("host only", func(t *testing.T) {
		t.Parallel()
		checkOrigins(t, mustOrigin(t, "*.example.com"), map[string]bool{
			"http://a.example.com":     true,
			"https://A.B.Example.com":  true,
			"http://a.example.com:81":  true,
			"http://example.com":       false,
			"http://evilexample.com":   false,
			"http://a.evilexample.com": false,
			"http://example.com.evil":  false,
		})
	})
	t.Run("schemed", func(t *testing.T) {
		t.Parallel()
		checkOrigins(t, mustOrigin(t, "https://*.example.com"), map[string]bool{
			"https://a.example.com":     true,
			"https://a.example.com:443": true,
			"http://a.example.com":      false,
			"https://a.example.com:444": false,
			"https://example.com":       false,
		})
	})
}

func TestOriginNull(t *testing.T) {
	t.Parallel()
	checkOrigins(t, mustOrigin(t, "example.com", ".example.com", "http://localhost"), map[string]bool{
		"null": false,
		"NULL": false,
		"":     false, // an empty header is no origin
	})
}

func TestOriginLastHeaderCounts(t *testing.T) {
	t.Parallel()
	mw := mustOrigin(t, "http://allowed.com")
	tests := []struct {
		name    string
		origins []string
		want    bool
	}{
		{"allowed last", []string{"http://evil.com", "http://allowed.com"}, true},
		{"evil last", []string{"http://allowed.com", "http://evil.com"}, false},
		{"null last", []string{"http://allowed.com", "null"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &okHandler{}
			_, err := mw(next).Connect(context.Background(), originConn(tt.origins...))
			if got := err == nil; got != tt.want {
				t.Fatalf("origins %q: allowed = %v (err %v), want %v", tt.origins, got, err, tt.want)
			}
		})
	}
}

func TestOriginRejectionReason(t *testing.T) {
	t.Parallel()
	mw := mustOrigin(t, "http://allowed.com")
	_, err := mw(&okHandler{}).Connect(context.Background(), originConn("http://evil.com"))
	var rej *canal.RejectError
	if !errors.As(err, &rej) || rej.Status != 403 || !strings.Contains(rej.Reason, "origin not allowed") {
		t.Fatalf("got %#v", err)
	}
	_, err = mw(&okHandler{}).Connect(context.Background(), originConn(strings.Repeat("x", 5000)))
	if !errors.As(err, &rej) || len(rej.Reason) > 300 {
		t.Fatalf("long origin not shortened in reason: %d bytes", len(rej.Reason))
	}
}

func TestOriginInvalidPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		why     string
	}{
		{"", "empty"},
		{"null", "null"},
		{"*.*.com", `"*"`},
		{"ex*ample.com", `"*"`},
		{"*example.com", `"*"`},
		{"https://*", `"*"`},
		{"*.", "invalid host"},
		{"http://", "invalid host"},
		{"1http://example.com", "invalid scheme"},
		{"://example.com", "invalid scheme"},
		{"example.com:abc", "invalid port"},
		{"example.com:", "invalid port"},
		{"example.com:0", "invalid port"},
		{"https://example.com:70000", "invalid port"},
		{"::1", "IPv6"},
		{"http://::1", "IPv6"},
		{"[::1", "IPv6"},
		{"[::1]x", "IPv6"},
		{"[127.0.0.1]", "IPv6"},
		{"[fe80::1%lo]", "IPv6"},
		{"https://example.com/app", "no path"},
		{"example.com?x=1", "no path"},
		{"user@example.com", "no path"},
		{"a..b", "invalid host"},
		{"example.com.", "invalid host"},
		{".", "invalid host"},
		{"exa mple.com", "invalid host"},
		{"café.fr", "invalid host"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			mw, err := middleware.Origin("http://ok.com", tt.pattern)
			if err == nil || mw != nil {
				t.Fatalf("Origin(%q) = %v, nil; want an error", tt.pattern, mw)
			}
			prefix := `middleware: origin pattern "` + tt.pattern + `": `
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("error %q does not mention %q", err, tt.why)
			}
		})
	}
	t.Run("empty list", func(t *testing.T) {
		t.Parallel()
		if _, err := middleware.Origin(); err == nil || !strings.HasPrefix(err.Error(), "middleware: ") {
			t.Fatalf("Origin() error = %v", err)
		}
	})
}

func TestAllowedHosts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		hosts []string
		debug bool
		cases map[string]bool
	}{
		{"debug defaults", nil, true, map[string]bool{
			"http://localhost":          true,
			"http://localhost:8000":     true,
			"https://127.0.0.1:3000":    true,
			"http://[::1]:8080":         true,
			"http://example.com":        false,
			"http://localhost.evil.com": false,
			"http://sub.localhost":      false,
			"<none>":                    false,
			"null":                      false,
		}},
		{"debug with a list uses the list only", []string{"example.com"}, true, map[string]bool{
			"http://example.com": true,
			"http://localhost":   false,
		}},
		{"django patterns", []string{".example.com", "api.other.org", "10.0.0.1"}, false, map[string]bool{
			"https://example.com":      true,
			"https://www.example.com":  true,
			"wss://api.other.org:8443": true,
			"https://other.org":        false,
			"http://10.0.0.1:8000":     true,
			"http://10.0.0.10":         false,
		}},
		{"star", []string{"*"}, false, map[string]bool{
			"<none>":          true,
			"null":            true,
			"http://evil.com": true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := middleware.AllowedHosts(tt.hosts, tt.debug)
			if err != nil {
				t.Fatal(err)
			}
			checkOrigins(t, mw, tt.cases)
		})
	}
	t.Run("empty without debug", func(t *testing.T) {
		t.Parallel()
		for _, hosts := range [][]string{nil, {}} {
			if mw, err := middleware.AllowedHosts(hosts, false); err == nil || mw != nil || !strings.HasPrefix(err.Error(), "middleware: ") {
				t.Fatalf("AllowedHosts(%q, false) = %v, %v; want an error", hosts, mw, err)
			}
		}
	})
	t.Run("invalid host", func(t *testing.T) {
		t.Parallel()
		_, err := middleware.AllowedHosts([]string{"example.com", "*.*"}, true)
		if err == nil || !strings.Contains(err.Error(), `"*.*"`) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestOriginNilNextPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a nil next handler")
		}
	}()
	mustOrigin(t, "*")(nil)
}
