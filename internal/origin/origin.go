// Package origin parses Origin headers and allow-list patterns with one syntax for
// middleware.Origin, middleware.AllowedHosts and the server's default check
// (server.Options.Origins): "https://example.com[:port]" (scheme, host and port),
// "example.com" (host only), ".example.com" (the domain and its subdomains) and
// "*.example.com" (subdomains only). Hosts compare case-insensitively and at label
// boundaries, so "evil-example.com" never matches ".example.com".
package origin

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// hostMatch says how a pattern's host matches an origin's host.
type hostMatch uint8

const (
	hostExact      hostMatch = iota // "example.com": that host only
	hostDomain                      // ".example.com": the domain and its subdomains
	hostSubdomains                  // "*.example.com": its subdomains only
)

// Pattern is one parsed allow-list entry.
type Pattern struct {
	scheme string // lowercase; "" for a host-only pattern
	host   string // lowercase, without the leading "." or "*."; IPv6 in canonical form
	match  hostMatch
	port   int // schemed patterns: the explicit or default port (0: the scheme has none)
}

func (p *Pattern) Matches(o Origin) bool {
	if p.scheme != "" {
		if !strings.EqualFold(o.Scheme, p.scheme) {
			return false
		}
		port := o.Port
		if port < 0 {
			port = defaultPort(p.scheme) // schemes are equal, so p's default is o's
		}
		if port != p.port {
			return false
		}
	}
	switch p.match {
	case hostDomain:
		return strings.EqualFold(o.Host, p.host) || isSubdomain(o.Host, p.host)
	case hostSubdomains:
		return isSubdomain(o.Host, p.host)
	default:
		return strings.EqualFold(o.Host, p.host)
	}
}

// isSubdomain reports whether host is a strict subdomain of domain, ignoring case.
// Comparing at a label boundary is what keeps "evil-example.com" out of ".example.com".
func isSubdomain(host, domain string) bool {
	n := len(host) - len(domain)
	return n > 1 && host[n-1] == '.' && strings.EqualFold(host[n:], domain)
}

func defaultPort(scheme string) int {
	switch scheme {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	}
	return 0
}

// ParsePattern parses an allow-list entry other than "*" (and "null", which it
// refuses: callers that allow it by name handle it first). Errors are completed with
// the pattern by the caller.
func ParsePattern(raw string) (Pattern, error) {
	var p Pattern
	s := strings.ToLower(raw)
	switch s {
	case "":
		return p, errors.New("empty pattern")
	case "null":
		// Sandboxed iframes and file: pages of any site send "null", so allowing it
		// alone would be "*" in disguise; Channels never matches it either.
		return p, errors.New(`"null" is the origin of sandboxed and file: pages of any site; it cannot be allowed on its own (use "*")`)
	}
	rest := s
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		if !validScheme(scheme) {
			return p, errors.New("invalid scheme")
		}
		p.scheme, rest = scheme, after
	}
	// A trailing slash is a common paste ("https://example.com/"); anything more is
	// not part of an origin.
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#@\\") {
		return p, errors.New("only a scheme, a host and a port are allowed (no path, query, fragment or user info)")
	}
	host, port, hasPort, ok := splitHostPort(rest)
	if !ok {
		return p, errors.New(`invalid host (IPv6 addresses need brackets, e.g. "[::1]")`)
	}
	if hasPort {
		n, ok := parsePort(port)
		if !ok || n == 0 {
			return p, fmt.Errorf("invalid port %q", port)
		}
		p.port = n
	} else if p.scheme != "" {
		p.port = defaultPort(p.scheme)
	}
	// A port on a scheme-less pattern is ignored: only the host is compared there.

	if strings.HasPrefix(host, "[") {
		a, ok := parseIPv6(host)
		if !ok {
			return p, fmt.Errorf("invalid IPv6 address %s", host)
		}
		p.host = a
		return p, nil
	}
	switch {
	case strings.HasPrefix(host, "*."):
		p.match, host = hostSubdomains, host[2:]
	case strings.HasPrefix(host, "."):
		p.match, host = hostDomain, host[1:]
	}
	if strings.Contains(host, "*") {
		return p, errors.New(`"*" is allowed only alone or as a leading "*." label, e.g. "*.example.com"`)
	}
	if !validHostname(host) {
		return p, fmt.Errorf("invalid host %q", host)
	}
	p.host = host
	return p, nil
}

// Origin is an Origin header value. Its fields are substrings of the header
// (except canonical IPv6), so parsing a usual origin allocates nothing.
type Origin struct {
	Scheme string // as sent; compared case-insensitively
	Host   string // as sent, without brackets; compared case-insensitively
	Port   int    // -1 when absent
}

// Parse parses an Origin header, "scheme://host[:port]". It reports false when there is no host
// to compare ("null", "example.com", "localhost:8000") or the value is malformed.
func Parse(h string) (Origin, bool) {
	var o Origin
	scheme, rest, ok := strings.Cut(h, "://")
	if !ok || !validScheme(scheme) {
		return o, false
	}
	o.Scheme = scheme
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:] // user info: browsers never send it; the host follows it
	}
	host, port, hasPort, ok := splitHostPort(rest)
	if !ok {
		return o, false
	}
	o.Port = -1
	if hasPort && port != "" { // "http://a.com:" means the default port
		if o.Port, ok = parsePort(port); !ok {
			return o, false
		}
	}
	if strings.HasPrefix(host, "[") {
		if o.Host, ok = parseIPv6(host); !ok {
			return o, false
		}
		return o, true
	}
	if !validHostname(host) {
		return o, false
	}
	o.Host = host
	return o, true
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port". The host keeps
// its brackets; an unbracketed host with a colon in it is refused.
func splitHostPort(s string) (host, port string, hasPort, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, false
		}
		host, after := s[:end+1], s[end+1:]
		if after == "" {
			return host, "", false, true
		}
		if after[0] != ':' {
			return "", "", false, false
		}
		return host, after[1:], true, true
	}
	host, port, hasPort = strings.Cut(s, ":")
	if strings.IndexByte(port, ':') >= 0 {
		return "", "", false, false
	}
	return host, port, hasPort, true
}

// parsePort parses a decimal port in 0–65535.
func parsePort(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, false
		}
	}
	return n, true
}

// parseIPv6 parses "[addr]" into the address's canonical text, so equal addresses
// written differently compare equal. Zones are refused: they never appear in origins.
func parseIPv6(bracketed string) (string, bool) {
	a, err := netip.ParseAddr(bracketed[1 : len(bracketed)-1])
	if err != nil || !a.Is6() || a.Zone() != "" {
		return "", false
	}
	return a.String(), true
}

// validScheme checks RFC 3986's scheme syntax, in either case.
func validScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validHostname accepts dot-separated non-empty labels of ASCII letters, digits, '-'
// and '_' (browsers send international names in punycode).
func validHostname(s string) bool {
	if s == "" {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case isLetter(c) || isDigit(c) || c == '-' || c == '_':
			label++
		default:
			return false
		}
	}
	return label > 0
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
