package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/ticket"
)

// SessionLookup resolves a Django session key (the value of the session cookie) to
// its user. It returns the anonymous canal.User and a nil error for a key that
// identifies nobody (expired, logged out, never existed), and an error wrapping
// [canal.ErrUnavailable] when the session store cannot answer. It must not put the
// key in its errors. It is called concurrently and must honour ctx.
type SessionLookup func(ctx context.Context, sessionKey string) (canal.User, error)

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
// Cookie authentication makes a WebSocket open to cross-site hijacking: any page the
// user visits can open a socket to the server and the browser attaches the cookie.
// Always put an origin check ([Origin] or [AllowedHosts]) before Session, as
// Channels' documentation asks for AllowedHostsOriginValidator.
//
// Outcomes:
//
//   - a live session: scope.User is set and the next handler runs;
//   - no cookie, or a session of nobody: anonymous pass-through, or 403 with Required;
//   - lookup error or timeout: 503. It fails closed: a session store that cannot
//     answer never lets a connection through, not even as anonymous.
//
// The session key never appears in a refusal's reason or error text. Session returns
// an error when lookup is nil or the options are invalid. The middleware is immutable
// and safe for concurrent use.
func Session(lookup SessionLookup, opts SessionOptions) (canal.Middleware, error) {
	if lookup == nil {
		return nil, errors.New("middleware: Session: nil lookup")
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
			if err := sessionAuth(ctx, c.Scope(), lookup, opts); err != nil {
				return nil, err
			}
			return next.Connect(ctx, c)
		})
	}, nil
}

func sessionAuth(ctx context.Context, s *canal.Scope, lookup SessionLookup, opts SessionOptions) error {
	key := s.Cookie(opts.Cookie)
	if key == "" {
		if opts.Required {
			return canal.Reject(http.StatusForbidden, "no session")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	u, err := lookup(ctx, key)
	switch {
	case err != nil:
		return &canal.RejectError{Status: http.StatusServiceUnavailable, Reason: "session lookup unavailable", Err: redact(err, key)}
	case u.Authenticated():
		s.User = u
		return nil
	case opts.Required:
		return canal.Reject(http.StatusForbidden, "no logged-in user")
	}
	return nil
}

// DjangoSessionOptions configure [DjangoSessionLookup].
type DjangoSessionOptions struct {
	// URL is django_canal's session endpoint, e.g.
	// "http://127.0.0.1:8000/session/". Required; http or https.
	URL string
	// Token is the shared secret Django knows as REALTIME_SESSION_TOKEN. Required: the
	// endpoint turns session keys into users, so only the Go server may call it.
	Token string
	// Client makes the requests; nil means a client of its own with no redirects
	// followed (a redirect would be a misconfigured URL, and must not carry the token
	// elsewhere).
	Client *http.Client
}

// DjangoSessionLookup returns a [SessionLookup] that asks the Django site itself,
// through django_canal's session endpoint: a POST carrying the key, answered with the
// user's id, username and the site's REALTIME_TICKET_CLAIMS, the same object a ticket
// holds. Django loads the session with its own SESSION_ENGINE (database, cache, signed
// cookies, ...) and checks it as every Django request does, including the password
// hash that ends sessions at a password change; nothing is cached on the Go side, so
// a logout takes effect on the next connection.
//
// A refused token, a redirect, an unexpected status or an unreadable answer is an
// error wrapping [canal.ErrUnavailable] (Session answers 503), never anonymous.
func DjangoSessionLookup(opts DjangoSessionOptions) (SessionLookup, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("middleware: DjangoSessionLookup: URL %q is not an http(s) URL", opts.URL)
	}
	if opts.Token == "" {
		return nil, errors.New("middleware: DjangoSessionLookup: empty Token (Django's REALTIME_SESSION_TOKEN)")
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	endpoint := u.String()
	auth := "Bearer " + opts.Token
	return func(ctx context.Context, key string) (canal.User, error) {
		body, err := json.Marshal(map[string]string{"session_key": key})
		if err != nil {
			return canal.User{}, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return canal.User{}, fmt.Errorf("%w: session endpoint: %v", canal.ErrUnavailable, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			// url.Error quotes the URL only; the key travels in the body.
			return canal.User{}, fmt.Errorf("%w: session endpoint: %v", canal.ErrUnavailable, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return canal.User{}, fmt.Errorf("%w: session endpoint: %v", canal.ErrUnavailable, err)
		}
		if resp.StatusCode != http.StatusOK {
			return canal.User{}, fmt.Errorf("%w: session endpoint answered %d", canal.ErrUnavailable, resp.StatusCode)
		}
		var answer map[string]json.RawMessage
		if err := json.Unmarshal(data, &answer); err != nil {
			return canal.User{}, fmt.Errorf("%w: session endpoint: unreadable answer: %v", canal.ErrUnavailable, err)
		}
		raw, ok := answer["user"]
		if !ok {
			return canal.User{}, fmt.Errorf("%w: session endpoint: answer has no \"user\"", canal.ErrUnavailable)
		}
		if string(raw) == "null" {
			return canal.User{}, nil // a session of nobody
		}
		user, err := ticket.Decode(raw)
		if err != nil {
			return canal.User{}, fmt.Errorf("%w: session endpoint: %v", canal.ErrUnavailable, err)
		}
		return user, nil
	}, nil
}
