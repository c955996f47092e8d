package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/origin"
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

// originValidator is immutable after construction, hence safe for concurrent use.
type originValidator struct {
	anyOrigin bool
	patterns  []origin.Pattern
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
		p, err := origin.ParsePattern(raw)
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
	o, ok := origin.Parse(h)
	if !ok {
		// "null", a bare host, garbage: no host to compare, as in Channels.
		return false
	}
	for i := range v.patterns {
		if v.patterns[i].Matches(o) {
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
