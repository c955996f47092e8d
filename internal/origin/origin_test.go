package origin

import "testing"

// TestMatches: the one syntax shared by middleware.Origin and server.Options.Origins,
// including the look-alikes that must not match.
func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, origin string
		want            bool
	}{
		{"https://example.com", "https://example.com", true},
		{"https://example.com", "https://EXAMPLE.com:443", true},
		{"https://example.com", "http://example.com", false},
		{"https://example.com", "https://example.com:8443", false},
		{"https://example.com:8443", "https://example.com:8443", true},
		{"example.com", "http://example.com:9000", true},
		{"example.com", "https://www.example.com", false},
		{".example.com", "https://example.com", true},
		{".example.com", "https://a.b.example.com", true},
		{".example.com", "https://evil-example.com", false},
		{".example.com", "https://example.com.evil.com", false},
		{"*.example.com", "https://example.com", false},
		{"*.example.com", "https://www.example.com", true},
		{"https://[::1]:8000", "https://[0:0::1]:8000", true},
		{"example.com", "https://evil.com@example.com", true}, // user info never counts as the host
		{"example.com", "https://example.com@evil.com", false},
		{"example.com", "null", false},
		{"example.com", "example.com", false}, // no scheme: no origin
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pattern, err)
		}
		o, ok := Parse(tt.origin)
		if got := ok && p.Matches(o); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.origin, got, tt.want)
		}
	}
}

// TestParsePatternErrors: patterns that cannot mean an origin are refused, with a
// reason.
func TestParsePatternErrors(t *testing.T) {
	for _, raw := range []string{"", "null", "https://example.com/path", "exa*mple.com", "https://example.com:0",
		"https://example.com:99999", "::1", "1nvalid scheme://x", "https://user@example.com"} {
		if _, err := ParsePattern(raw); err == nil {
			t.Errorf("ParsePattern(%q) accepted", raw)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"https://example.com", "http://[::1]:80", "null", "https://a@b:1/x?y#z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		o, ok := Parse(h)
		if ok && o.Host == "" {
			t.Fatalf("Parse(%q) gave no host", h)
		}
	})
}
