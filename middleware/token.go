package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/canal-rt/canal"
)

// ErrInvalidToken is what a [TokenLookup] returns (possibly wrapped) for a token that
// identifies nobody: unknown, expired or revoked. QueryToken answers it with 403.
var ErrInvalidToken = errors.New("middleware: invalid token")

// TokenLookup resolves a token to its user, e.g. a Django REST framework token looked
// up in the database or a ticket in Redis.
//
// It returns an error wrapping [ErrInvalidToken] when the token identifies nobody, and
// one wrapping [canal.ErrUnavailable] when the backing store cannot answer. It must not
// put the token in its errors; QueryToken scrubs the exact token from error text as a
// safety net, not as a licence. It is called concurrently and must honour ctx.
type TokenLookup func(ctx context.Context, token string) (canal.User, error)

// QueryTokenOptions configure [QueryToken]. The zero value reads "token" and lets
// connections without one through as anonymous.
type QueryTokenOptions struct {
	// Param is the query parameter carrying the token; "" means "token".
	Param string
	// Required refuses connections that carry no token with HTTP 403. When false
	// (the default) they continue with scope.User untouched: the anonymous user,
	// unless an earlier middleware set one. That is what Channels' AuthMiddleware
	// does for a request without credentials; the consumer decides what anonymous
	// users may do.
	Required bool
	// Timeout bounds each lookup; zero leaves only the handshake's context. A lookup
	// that runs out of time fails closed with 503.
	Timeout time.Duration
}

// QueryToken returns a middleware that authenticates the handshake with a token from
// the query string (ws://host/ws/chat/?token=...), the pattern Channels users write by
// hand because browsers cannot set headers on a WebSocket.
//
// The token is the first non-empty value of the parameter, percent-decoded; an empty
// value counts as no token. The outcomes:
//
//   - lookup succeeds: scope.User is set and the next handler runs;
//   - no token: anonymous pass-through, or 403 with Required;
//   - undecodable token, lookup error wrapping ErrInvalidToken, or an anonymous User
//     with a nil error: 403;
//   - lookup error wrapping canal.ErrUnavailable, or any other error, or a timeout: 503.
//     Authentication fails closed: a broken store never lets anyone in.
//
// The token never appears in the reason or error text of a refusal. Query strings end
// up in access logs, so prefer short-lived tickets over long-lived API tokens.
//
// QueryToken returns an error when lookup is nil or the options are invalid. The
// returned middleware is immutable and safe for concurrent use.
func QueryToken(lookup TokenLookup, opts QueryTokenOptions) (canal.Middleware, error) {
	if lookup == nil {
		return nil, errors.New("middleware: QueryToken: nil lookup")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("middleware: QueryToken: negative timeout %v", opts.Timeout)
	}
	if opts.Param == "" {
		opts.Param = "token"
	}
	a := &tokenAuth{lookup: lookup, opts: opts}
	return func(next canal.Handler) canal.Handler {
		if next == nil {
			panic("middleware: QueryToken: nil next handler")
		}
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			if err := a.authenticate(ctx, c.Scope()); err != nil {
				return nil, err
			}
			return next.Connect(ctx, c)
		})
	}, nil
}

type tokenAuth struct {
	lookup TokenLookup
	opts   QueryTokenOptions
}

func (a *tokenAuth) authenticate(ctx context.Context, s *canal.Scope) error {
	token, raw, found, ok := queryParam(s.RawQuery, a.opts.Param)
	if !ok {
		return &canal.RejectError{Status: http.StatusForbidden, Reason: "malformed token", Err: ErrInvalidToken}
	}
	if !found {
		if a.opts.Required {
			return &canal.RejectError{Status: http.StatusForbidden, Reason: "missing token"}
		}
		return nil
	}
	if a.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.opts.Timeout)
		defer cancel()
	}
	u, err := a.lookup(ctx, token)
	switch {
	case err == nil && u.Authenticated():
		s.User = u
		return nil
	case err == nil:
		// A lookup that answers "nobody" without an error (the article's AnonymousUser
		// fallback) still means the presented token is worthless.
		return &canal.RejectError{Status: http.StatusForbidden, Reason: "invalid token", Err: ErrInvalidToken}
	case errors.Is(err, ErrInvalidToken):
		return &canal.RejectError{Status: http.StatusForbidden, Reason: "invalid token", Err: redact(err, token, raw)}
	case errors.Is(err, canal.ErrUnavailable):
		return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "token lookup unavailable", Err: redact(err, token, raw)}
	default:
		return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "token lookup failed", Err: redact(err, token, raw)}
	}
}

// queryParam finds the first non-empty value of name in a raw query string without
// parsing the rest, so the usual case allocates nothing. It returns the decoded value
// and the value as sent; ok is false when that value cannot be decoded. Pairs whose
// key cannot be decoded are skipped, as url.ParseQuery does.
func queryParam(rawQuery, name string) (value, raw string, found, ok bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if v == "" || strings.Contains(k, ";") {
			continue
		}
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			dk, err := url.QueryUnescape(k)
			if err != nil || dk != name {
				continue
			}
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return "", "", true, false
		}
		if dv == "" {
			continue
		}
		return dv, v, true, true
	}
	return "", "", false, true
}

// redactedError hides a token that a lookup put in its error text, while errors.Is and
// errors.As still see the original chain.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secrets ...string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &redactedError{msg: msg, err: err}
}
