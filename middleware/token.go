package middleware

import (
	"errors"
	"fmt"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
)

// TokenOptions configure [Token]. The zero value allows all three transports with
// the parameter and JSON field "token", the marker "canal.token", a 5 s wait for a
// first-message token and a 2 s bound on each verification, and refuses connections
// that present no token.
type TokenOptions struct {
	// Transports are the ways a token may arrive; zero means all three, or query and
	// subprotocol when Anonymous is set. A long-lived token (a DRF token) is better kept
	// out of URLs, which access logs and browser history keep: leave TransportQuery
	// out for those.
	Transports Transport
	// Param is the query parameter carrying the token; "" means "token". The JSON field
	// of a first message is always "token".
	Param string
	// Subprotocol is the marker subprotocol; "" means "canal.token". The bearer entry
	// is Subprotocol + "." + token, or Subprotocol + "-b64." + base64url(token) for a
	// token that is not a valid subprotocol name (see [BearerProtocol]). It must itself
	// be a valid subprotocol name (an HTTP token).
	Subprotocol string
	// Anonymous lets a connection that presents no token before the upgrade continue
	// with scope.User untouched (the anonymous user, unless an earlier middleware set
	// one), as Channels' AuthMiddleware does; the consumer decides what anonymous users
	// may do. A token, when present, is still checked: a bad one is refused. Anonymous
	// excludes TransportFirstMessage, since nothing would tell "no token" from "token
	// coming".
	Anonymous bool
	// AuthTimeout is how long a first-message client has, from the handshake, to send
	// its token frame; zero means 5 s.
	AuthTimeout time.Duration
	// Timeout bounds one verification; zero means 2 s. A verifier that runs out of
	// time fails closed.
	Timeout time.Duration
}

// Token returns a middleware that authenticates each connection with a credential
// checked by v: a Django REST framework token, a simplejwt access token, a
// django.core.signing token, a session key, anything an [auth.Verifier] resolves to a
// user. Browsers cannot set an Authorization header on a WebSocket, so the token
// travels one of three ways, as [Ticket]'s tickets do (the same mechanics, names
// aside):
//
//   - Query (TransportQuery): ws://host/ws/chat/?token=T, the pattern Channels users
//     write by hand. The parameter is removed from scope.RawQuery before the next
//     handler runs.
//   - Subprotocol (TransportSubprotocol): new WebSocket(url, ["canal.token",
//     "canal.token." + T]), or the "canal.token-b64." form of [BearerProtocol] for a
//     token with ':' or other separators. Bearer entries never reach the application.
//   - First message (TransportFirstMessage): the socket is accepted and the first text
//     frame carries the token, bare (websocket.send(token)) or as {"token": T}; the
//     next handler runs once it is verified.
//
// Outcomes: those of [Ticket], with "token" for "ticket" in the reasons and "token
// verifier" for "ticket store", and a verifier error wrapping auth.ErrInvalid (or an
// anonymous user with a nil error) for an invalid ticket. A connection with no token
// is refused (403 "missing token"), or waits for a first message, or with Anonymous
// continues as anonymous; one already authenticated by an earlier middleware
// continues as it is. Authentication fails closed: a verifier that reports
// canal.ErrUnavailable, fails otherwise or runs out of time gives 503 (close 1011
// after a first message), never a connection.
//
// The token never appears in a refusal's reason or error text (the exact token is
// scrubbed from the verifier's errors too, as a safety net), nor in anything the
// middleware logs; the server's own logs carry the path, never the query string.
//
// Token returns an error when v is nil, a duration is negative, Transports has unknown
// bits or includes TransportFirstMessage with Anonymous, Param is not a plain query
// key or Subprotocol is not a valid subprotocol name. The returned middleware is
// immutable and safe for concurrent use; v is called concurrently.
func Token(v auth.Verifier, opts TokenOptions) (canal.Middleware, error) {
	if v == nil {
		return nil, errors.New("middleware: Token: nil verifier")
	}
	if opts.Anonymous {
		if opts.Transports&TransportFirstMessage != 0 {
			return nil, fmt.Errorf("middleware: Token: Anonymous excludes TransportFirstMessage")
		}
		if opts.Transports == 0 {
			opts.Transports = TransportQuery | TransportSubprotocol
		}
	}
	a, err := newCredentialAuth(&credentialAuth{
		name: "Token", what: "token", backend: "token verifier",
		verify: v, anonymous: opts.Anonymous,
	}, credentialOptions{
		Transports:  opts.Transports,
		Param:       opts.Param,
		Subprotocol: opts.Subprotocol,
		AuthTimeout: opts.AuthTimeout,
		Timeout:     opts.Timeout,
	})
	if err != nil {
		return nil, err
	}
	return a.middleware(), nil
}
