package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// The default origin check. A browser sends the visitor's cookies with any WebSocket
// handshake, whatever page opens it, and it is the server's job to refuse pages of
// other sites (cross-site WebSocket hijacking). So by default, as in coder/websocket,
// Phoenix and Go's http.CrossOriginProtection, a handshake that carries an Origin must
// come from the request's own host; Options.Origins names the others. The check runs
// before any handler, so it holds whatever the middleware stack forgets.

// refuseOrigin answers 403, and returns true, when the request's Origin is neither its
// own host nor allowed by Options.Origins. It runs before the handler, for sockets and
// event streams alike.
func (s *Server) refuseOrigin(fctx *fasthttp.RequestCtx) bool {
	if s.opts.InsecureSkipOriginCheck {
		return false
	}
	values := fctx.Request.Header.PeekAll("Origin")
	if len(values) == 0 {
		return false // a non-browser client, or a same-origin EventSource: see Options.Origins
	}
	host := string(fctx.Host())
	p := &s.opts.defense.origins
	if len(values) == 1 {
		origin := string(values[0])
		if sameHost(origin, host) || p.allows(origin) {
			return false
		}
	}
	// Two Origin headers come from no browser: refused rather than guessing which counts.
	origin := string(values[len(values)-1])
	fctx.SetStatusCode(http.StatusForbidden)
	// The origin and host are public and quoted; the query string (tickets) and
	// cookies are not logged.
	s.opts.defense.logs.Log(s.opts.Logger, slog.LevelWarn, logOrigin,
		fmt.Sprintf("canal: origin %s refused: not the request's host %s; "+
			"allow it with server.Options.Origins, or check origins with middleware.Origin "+
			"and set server.Options.InsecureSkipOriginCheck", quoteShort(origin), quoteShort(host)),
		"path", string(fctx.Path()))
	return true
}

// quoteShort quotes a client-chosen value for a log line, cut to a sane length.
func quoteShort(s string) string {
	const max = 100
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// sameHost reports whether origin is an http or https origin whose host[:port] is
// host, the request's Host header, ignoring case. The scheme is not compared: behind a
// TLS-terminating proxy the server cannot tell which one the page used. Browsers write
// neither default ports nor paths in origins, so a plain comparison is exact.
func sameHost(origin, host string) bool {
	scheme, rest, ok := strings.Cut(origin, "://")
	if !ok || host == "" || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
		return false
	}
	return strings.EqualFold(rest, host)
}

// originPolicy is Options.Origins, parsed. Immutable after withDefaults.
type originPolicy struct {
	any      bool // "*"
	null     bool // "null"
	patterns []originPattern
}

// hostMatch says how a pattern's host matches an origin's host.
type hostMatch uint8

const (
	hostExact      hostMatch = iota // "example.com": that host only
	hostDomain                      // ".example.com": the domain and its subdomains
	hostSubdomains                  // "*.example.com": its subdomains only
)

// originPattern is one entry of Options.Origins, with middleware.Origin's syntax.
type originPattern struct {
	scheme string // lowercase; "" for a host-only pattern
	host   string // lowercase, without "." or "*."; IPv6 in canonical form, no brackets
	match  hostMatch
	port   int // schemed patterns: the explicit or default port (0: the scheme has none)
}

var errOriginPattern = errors.New("origin pattern")

// parseOrigins parses Options.Origins; errors name the pattern.
func parseOrigins(list []string) (originPolicy, error) {
	var p originPolicy
	for _, raw := range list {
		switch strings.ToLower(raw) {
		case "*":
			p.any = true
			continue
		case "null":
			p.null = true
			continue
		}
		pat, err := parseOriginPattern(raw)
		if err != nil {
			return p, fmt.Errorf("%w %q: %v", errOriginPattern, raw, err)
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

// allows reports whether the Origin header value h matches the list.
func (p *originPolicy) allows(h string) bool {
	if p.any {
		return true
	}
	if h == "null" {
		return p.null
	}
	if len(p.patterns) == 0 {
		return false
	}
	scheme, host, port, ok := parseOriginValue(h)
	if !ok {
		return false
	}
	for _, pat := range p.patterns {
		if pat.matches(scheme, host, port) {
			return true
		}
	}
	return false
}

func (p *originPattern) matches(scheme, host string, port int) bool {
	if p.scheme != "" {
		if !strings.EqualFold(scheme, p.scheme) {
			return false
		}
		if port < 0 {
			port = defaultPort(p.scheme)
		}
		if port != p.port {
			return false
		}
	}
	switch p.match {
	case hostDomain:
		return strings.EqualFold(host, p.host) || isSubdomain(host, p.host)
	case hostSubdomains:
		return isSubdomain(host, p.host)
	default:
		return strings.EqualFold(host, p.host)
	}
}

// isSubdomain reports whether host is a strict subdomain of domain, ignoring case.
// Comparing at a label boundary keeps "evil-example.com" out of ".example.com".
func isSubdomain(host, domain string) bool {
	n := len(host) - len(domain)
	return n > 1 && host[n-1] == '.' && strings.EqualFold(host[n:], domain)
}

func defaultPort(scheme string) int {
	switch strings.ToLower(scheme) {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	}
	return 0
}

func parseOriginPattern(raw string) (originPattern, error) {
	var p originPattern
	s := strings.ToLower(raw)
	if s == "" {
		return p, errors.New("empty")
	}
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		if !validScheme(scheme) {
			return p, errors.New("invalid scheme")
		}
		p.scheme, s = scheme, after
	}
	s = strings.TrimSuffix(s, "/") // a common paste: "https://example.com/"
	if strings.ContainsAny(s, "/?#@\\") {
		return p, errors.New("only a scheme, a host and a port are allowed (no path, query, fragment or user info)")
	}
	host, port, hasPort, ok := splitHostPort(s)
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
	// A port on a scheme-less pattern is ignored, as in middleware.Origin: only the
	// host is compared there.
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

// parseOriginValue parses an Origin header "scheme://host[:port]"; port is -1 when
// absent. It reports false when there is no host to compare.
func parseOriginValue(h string) (scheme, host string, port int, ok bool) {
	scheme, rest, ok := strings.Cut(h, "://")
	if !ok || !validScheme(scheme) || strings.ContainsAny(rest, "/?#@\\") {
		return "", "", 0, false
	}
	host, p, hasPort, ok := splitHostPort(rest)
	if !ok {
		return "", "", 0, false
	}
	port = -1
	if hasPort && p != "" {
		if port, ok = parsePort(p); !ok {
			return "", "", 0, false
		}
	}
	if strings.HasPrefix(host, "[") {
		if host, ok = parseIPv6(host); !ok {
			return "", "", 0, false
		}
		return scheme, host, port, true
	}
	if !validHostname(host) {
		return "", "", 0, false
	}
	return scheme, host, port, true
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"; the host keeps its
// brackets, and an unbracketed host with a colon is refused.
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

func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}

// parseIPv6 turns "[addr]" into the address's canonical text, so that equal addresses
// written differently compare equal. Zones never appear in origins.
func parseIPv6(bracketed string) (string, bool) {
	a, err := netip.ParseAddr(bracketed[1 : len(bracketed)-1])
	if err != nil || !a.Is6() || a.Zone() != "" {
		return "", false
	}
	return a.String(), true
}

// validScheme checks RFC 3986's scheme syntax.
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
