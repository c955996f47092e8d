package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/canal-rt/canal"
)

// Origin returns a middleware that refuses handshakes whose Origin header is not in
// allowed, with Channels' OriginValidator rules:
//
//   - The last Origin header counts.
//   - "*" allows every origin, including a missing one and "null". Without "*" a
//     missing origin is refused.
//   - A pattern without a scheme ("example.com", ".example.com", "127.0.0.1",
//     "[::1]") compares only the host, case-insensitively; the origin's scheme and
//     port are ignored. A leading dot matches the domain and all its subdomains.
//   - A pattern with a scheme ("https://secure.com:8443") needs the same scheme, a
//     matching host and the same port, where a missing port means the scheme's
//     default (80 for http and ws, 443 for https and wss).
//
// Two departures from Channels, both so that a pattern never silently matches nothing:
//
//   - A scheme-less pattern with a port ("localhost:8000") matches its host on any
//     port, like "127.0.0.1:8000" already does in Channels. (Channels parses
//     "localhost:8000" as scheme "localhost" and never matches it.) Write
//     "http://localhost:8000" to pin the port.
//   - "*.example.com" is a wildcard for the subdomains of example.com, not the
//     domain itself; ".example.com" matches both. "*" anywhere else is an error.
//
// Patterns are checked here, not per connection: an invalid one (a path, a bad port,
// an unbracketed IPv6 address, "null", an empty list) is an error naming it. IPv6
// hosts are written in brackets ("[::1]", "http://[::1]:8000") and compared by
// address, so "[0:0::1]" and "[::1]" are the same host.
//
// A refused handshake returns canal.Reject(403, ...), which the server answers with
// HTTP 403 before the upgrade, as Daphne does. The returned middleware is immutable
// and safe for concurrent use.
func Origin(allowed ...string) (canal.Middleware, error) {
	v, err := newOriginValidator(allowed)
	if err != nil {
		return nil, err
	}
	return v.middleware("Origin"), nil
}

// debugHosts are the hosts Channels' AllowedHostsOriginValidator allows when DEBUG is
// on and ALLOWED_HOSTS is empty.
var debugHosts = []string{"localhost", "127.0.0.1", "[::1]"}

// AllowedHosts returns a middleware like Channels' AllowedHostsOriginValidator: the
// allow-list is Django's ALLOWED_HOSTS ("example.com", ".example.com", "*", ...),
// checked against the Origin header with the rules of [Origin].
//
// With debug on and an empty list it allows "localhost", "127.0.0.1" and "[::1]" on
// any port, as Channels does in DEBUG. With debug off an empty list is an error
// rather than a middleware that refuses everyone: Django itself refuses to start
// with an empty ALLOWED_HOSTS outside DEBUG.
func AllowedHosts(allowedHosts []string, debug bool) (canal.Middleware, error) {
	hosts := allowedHosts
	if len(hosts) == 0 {
		if !debug {
			return nil, errors.New("middleware: AllowedHosts: empty allowed hosts with debug off (set the hosts, or \"*\" to allow every origin)")
		}
		hosts = debugHosts
	}
	v, err := newOriginValidator(hosts)
	if err != nil {
		return nil, err
	}
	return v.middleware("AllowedHosts"), nil
}

// hostMatch says how a pattern's host matches an origin's host.
type hostMatch uint8

const (
	hostExact      hostMatch = iota // "example.com": that host only
	hostDomain                      // ".example.com": the domain and its subdomains
	hostSubdomains                  // "*.example.com": its subdomains only
)

// originPattern is one parsed allow-list entry.
type originPattern struct {
	scheme string // lowercase; "" for a host-only pattern
	host   string // lowercase, without the leading "." or "*."; IPv6 in canonical form
	match  hostMatch
	port   int // schemed patterns: the explicit or default port (0: the scheme has none)
}

// originValidator is immutable after construction, hence safe for concurrent use.
type originValidator struct {
	anyOrigin bool
	patterns  []originPattern
}

func newOriginValidator(allowed []string) (*originValidator, error) {
	if len(allowed) == 0 {
		return nil, errors.New("middleware: empty origin allow-list (use \"*\" to allow every origin)")
	}
	v := &originValidator{}
	for _, raw := range allowed {
		if raw == "*" {
			v.anyOrigin = true
			continue
		}
		p, err := parsePattern(raw)
		if err != nil {
			return nil, fmt.Errorf("middleware: origin pattern %q: %w", raw, err)
		}
		v.patterns = append(v.patterns, p)
	}
	return v, nil
}

func (v *originValidator) middleware(name string) canal.Middleware {
	return func(next canal.Handler) canal.Handler {
		if next == nil {
			panic("middleware: " + name + ": nil next handler")
		}
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			origin := c.Scope().Header("Origin")
			if !v.allows(origin) {
				return nil, originRejection(origin)
			}
			return next.Connect(ctx, c)
		})
	}
}

// allows reports whether the Origin header value h passes the allow-list.
func (v *originValidator) allows(h string) bool {
	if v.anyOrigin {
		return true
	}
	if h == "" {
		return false
	}
	o, ok := parseOrigin(h)
	if !ok {
		// "null", a bare host, garbage: no host to compare, as in Channels.
		return false
	}
	for i := range v.patterns {
		if v.patterns[i].matches(o) {
			return true
		}
	}
	return false
}

// originRejection builds the 403. The origin is public, so the reason may name it,
// quoted and shortened because the client chose it.
func originRejection(origin string) error {
	if origin == "" {
		return canal.Reject(http.StatusForbidden, "origin not allowed: no Origin header")
	}
	const max = 200
	if len(origin) > max {
		origin = origin[:max] + "..."
	}
	return canal.Reject(http.StatusForbidden, fmt.Sprintf("origin not allowed: %q", origin))
}

func (p *originPattern) matches(o parsedOrigin) bool {
	if p.scheme != "" {
		if !strings.EqualFold(o.scheme, p.scheme) {
			return false
		}
		port := o.port
		if port < 0 {
			port = defaultPort(p.scheme) // schemes are equal, so p's default is o's
		}
		if port != p.port {
			return false
		}
	}
	switch p.match {
	case hostDomain:
		return strings.EqualFold(o.host, p.host) || isSubdomain(o.host, p.host)
	case hostSubdomains:
		return isSubdomain(o.host, p.host)
	default:
		return strings.EqualFold(o.host, p.host)
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

// parsePattern parses an allow-list entry other than "*". Errors are completed with
// the pattern by the caller.
func parsePattern(raw string) (originPattern, error) {
	var p originPattern
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

// parsedOrigin is an Origin header value. Its fields are substrings of the header
// (except canonical IPv6), so parsing a usual origin allocates nothing.
type parsedOrigin struct {
	scheme string // as sent; compared case-insensitively
	host   string // as sent, without brackets; compared case-insensitively
	port   int    // -1 when absent
}

// parseOrigin parses "scheme://host[:port]". It reports false when there is no host
// to compare ("null", "example.com", "localhost:8000") or the value is malformed.
func parseOrigin(h string) (parsedOrigin, bool) {
	var o parsedOrigin
	scheme, rest, ok := strings.Cut(h, "://")
	if !ok || !validScheme(scheme) {
		return o, false
	}
	o.scheme = scheme
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
	o.port = -1
	if hasPort && port != "" { // "http://a.com:" means the default port
		if o.port, ok = parsePort(port); !ok {
			return o, false
		}
	}
	if strings.HasPrefix(host, "[") {
		if o.host, ok = parseIPv6(host); !ok {
			return o, false
		}
		return o, true
	}
	if !validHostname(host) {
		return o, false
	}
	o.host = host
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
