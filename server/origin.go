package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/canal-rt/canal/internal/origin"
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
	patterns []origin.Pattern
}

var errOriginPattern = errors.New("origin pattern")

// parseOrigins parses Options.Origins, with middleware.Origin's syntax (package
// internal/origin) plus "null" when named; errors name the pattern.
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
		pat, err := origin.ParsePattern(raw)
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
	o, ok := origin.Parse(h)
	if !ok {
		return false
	}
	for i := range p.patterns {
		if p.patterns[i].Matches(o) {
			return true
		}
	}
	return false
}
