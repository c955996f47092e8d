package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
)

// SessionOptions configure [Session]. The zero value reads Django's default cookie,
// "sessionid", and lets visitors without a live session through as anonymous.
type SessionOptions struct {
	// Cookie is the session cookie's name, Django's SESSION_COOKIE_NAME; "" means
	// "sessionid".
	Cookie string
	// Required refuses, with HTTP 403, connections whose cookie is missing or names no
	// logged-in user. When false they continue as anonymous, as with Channels'
	// AuthMiddlewareStack, and the consumer decides.
	Required bool
	// Timeout bounds each lookup; zero means 5 s. A lookup that runs out of time
	// fails closed with 503.
	Timeout time.Duration
}

const defaultSessionTimeout = 5 * time.Second

// Session returns a middleware that authenticates the handshake with the visitor's
// Django session cookie: Channels' AuthMiddlewareStack, for a Go server that shares
// the site's domain (the browser sends the cookie with the upgrade request).
//
// The session key is the credential verify checks; in production it asks the site:
//
//	verify, err := auth.Django(auth.DjangoOptions{
//		URL: "http://127.0.0.1:8000/auth/", Token: secret, Kind: "session",
//	})
//
// so Django loads the session with its own SESSION_ENGINE and checks it as every
// request does (expiry, logout, the password hash that ends sessions at a password
// change).
//
// Cookie authentication makes a WebSocket open to cross-site hijacking: any page the
// user visits can open a socket to the server and the browser attaches the cookie.
// Always put an origin check ([Origin] or [AllowedHosts]) before Session, as
// Channels' documentation asks for AllowedHostsOriginValidator.
//
// Outcomes:
//
//   - a live session: scope.User is set and the next handler runs;
//   - no cookie, or a session of nobody (verify's error wraps [auth.ErrInvalid]):
//     anonymous pass-through, or 403 with Required;
//   - any other error, or a timeout: 503. It fails closed: a session store that
//     cannot answer never lets a connection through, not even as anonymous.
//
// The session key never appears in a refusal's reason or error text. Session returns
// an error when verify is nil or the options are invalid. The middleware is immutable
// and safe for concurrent use.
func Session(verify auth.Verifier, opts SessionOptions) (canal.Middleware, error) {
	if verify == nil {
		return nil, errors.New("middleware: Session: nil verifier")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("middleware: Session: negative timeout %v", opts.Timeout)
	}
	if opts.Cookie == "" {
		opts.Cookie = "sessionid"
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultSessionTimeout
	}
	return func(next canal.Handler) canal.Handler {
		if next == nil {
			panic("middleware: Session: nil next handler")
		}
		return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
			if err := sessionAuth(ctx, c.Scope(), verify, opts); err != nil {
				return nil, err
			}
			return next.Connect(ctx, c)
		})
	}, nil
}

func sessionAuth(ctx context.Context, s *canal.Scope, verify auth.Verifier, opts SessionOptions) error {
	key := s.Cookie(opts.Cookie)
	if key == "" {
		if opts.Required {
			return canal.Reject(http.StatusForbidden, "no session")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	u, err := verify(ctx, key)
	switch {
	case err != nil && !errors.Is(err, auth.ErrInvalid):
		return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "session lookup unavailable", Err: redact(err, key)}
	case err == nil && u.Authenticated():
		s.User = u
		return nil
	case opts.Required:
		return canal.Reject(http.StatusForbidden, "no logged-in user")
	}
	return nil
}
