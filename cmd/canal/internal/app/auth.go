package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/ticket"
)

// credentials holds what the configured credential kinds need: one middleware for
// session and ticket, one verifier per token kind (a route combines its token kinds
// into one middleware). Each kind is one small wiring function.
type credentials struct {
	session, ticket canal.Middleware
	tokens          map[string]auth.Verifier
}

func (a *App) credentials(ctx context.Context) (*credentials, error) {
	cr := &credentials{tokens: map[string]auth.Verifier{}}
	var err error
	if t := a.cfg.Auth.Ticket; t != nil {
		if cr.ticket, err = a.ticketAuth(ctx, t); err != nil {
			return nil, fmt.Errorf("auth.ticket: %w", err)
		}
	}
	if s := a.cfg.Auth.Session; s != nil {
		if cr.session, err = sessionAuth(s, a.cfg.SessionToken); err != nil {
			return nil, fmt.Errorf("auth.session: %w", err)
		}
	}
	if a.cfg.Auth.JWT != nil {
		if cr.tokens[config.KindJWT], err = auth.SimpleJWT(a.cfg.JWTOptions()); err != nil {
			return nil, fmt.Errorf("auth.jwt: %w", err)
		}
	}
	if a.cfg.Auth.Signed != nil {
		if cr.tokens[config.KindSigned], err = auth.Signed(a.cfg.SignedOptions()); err != nil {
			return nil, fmt.Errorf("auth.signed: %w", err)
		}
	}
	if d := a.cfg.Auth.Django; d != nil {
		for _, kind := range d.Kinds {
			if cr.tokens[kind], err = djangoAuth(a.cfg, kind); err != nil {
				return nil, fmt.Errorf("auth.django %s: %w", kind, err)
			}
		}
	}
	return cr, nil
}

// djangoAuth asks django_canal's /auth/ about one kind, through a cache when
// auth.django.cache is set.
func djangoAuth(cfg *config.Config, kind string) (auth.Verifier, error) {
	v, err := auth.Django(cfg.DjangoOptions(kind))
	if err != nil || cfg.Auth.Django.Cache.Duration == 0 {
		return v, err
	}
	return auth.Cache(v, auth.CacheOptions{TTL: cfg.Auth.Django.Cache.Duration})
}

// chain returns a route's credential middleware: the session cookie first (it
// consumes nothing; a live session lets the connection through the rest), then the
// ticket or the route's token kinds as one middleware.
func (cr *credentials) chain(cfg *config.Config, r *config.Route) (canal.Chain, error) {
	var ch canal.Chain
	if slices.Contains(r.Auth, config.KindSession) {
		ch = append(ch, cr.session)
	}
	if slices.Contains(r.Auth, config.KindTicket) {
		ch = append(ch, cr.ticket)
	}
	var vs []auth.Verifier
	for _, k := range r.Auth {
		if v, ok := cr.tokens[k]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) > 0 {
		mw, err := middleware.Token(firstOf(vs), cfg.TokenOptions(r.Anonymous))
		if err != nil {
			return nil, err
		}
		ch = append(ch, mw)
	}
	return ch, nil
}

// firstOf tries each verifier in turn while they answer auth.ErrInvalid; any other
// error (Django unreachable) ends the search and fails the connection closed.
func firstOf(vs []auth.Verifier) auth.Verifier {
	if len(vs) == 1 {
		return vs[0]
	}
	return func(ctx context.Context, credential string) (canal.User, error) {
		var err error
		for _, v := range vs {
			u, e := v(ctx, credential)
			if e == nil || !errors.Is(e, auth.ErrInvalid) {
				return u, e
			}
			err = e
		}
		return canal.User{}, err
	}
}

func (a *App) ticketAuth(ctx context.Context, t *config.TicketAuth) (canal.Middleware, error) {
	client, err := a.redisClient(ctx, a.cfg.Redis.URL)
	if err != nil {
		return nil, err
	}
	store, err := ticket.NewRedis(client, ticket.RedisOptions{Prefix: t.Prefix})
	if err != nil {
		return nil, err
	}
	var tr middleware.Transport
	for _, name := range t.Transports {
		switch name {
		case "query":
			tr |= middleware.TransportQuery
		case "subprotocol":
			tr |= middleware.TransportSubprotocol
		case "first_message":
			tr |= middleware.TransportFirstMessage
		}
	}
	return middleware.Ticket(store, middleware.TicketOptions{Transports: tr})
}

// sessionAuth checks Django's session cookie by asking django_canal's endpoint.
func sessionAuth(s *config.SessionAuth, token string) (canal.Middleware, error) {
	verify, err := auth.Django(auth.DjangoOptions{URL: s.URL, Token: token, Kind: "session"})
	if err != nil {
		return nil, err
	}
	return middleware.Session(verify, middleware.SessionOptions{Cookie: s.Cookie})
}
