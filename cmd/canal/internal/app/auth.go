package app

import (
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/ticket"
)

// authOrder is the order credential middleware runs in, whatever the order a route
// lists them: cookie first (it never consumes anything), single-use tickets last
// (a ticket, when present, wins; without one, a session user goes through as is).
var authOrder = []string{config.KindSession, config.KindTicket}

// credentials builds one middleware per configured credential kind. Each kind is one
// small wiring function.
func (a *App) credentials() (map[string]canal.Middleware, error) {
	out := map[string]canal.Middleware{}
	if t := a.cfg.Auth.Ticket; t != nil {
		mw, err := a.ticketAuth(t)
		if err != nil {
			return nil, fmt.Errorf("auth.ticket: %w", err)
		}
		out[config.KindTicket] = mw
	}
	if s := a.cfg.Auth.Session; s != nil {
		mw, err := sessionAuth(s, a.cfg.SessionToken)
		if err != nil {
			return nil, fmt.Errorf("auth.session: %w", err)
		}
		out[config.KindSession] = mw
	}
	return out, nil
}

func (a *App) ticketAuth(t *config.TicketAuth) (canal.Middleware, error) {
	client, err := a.redisClient(a.cfg.Redis.URL)
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

// chainFor returns the credential middleware of a route, in authOrder.
func chainFor(r *config.Route, kinds map[string]canal.Middleware) canal.Chain {
	var ch canal.Chain
	for _, k := range authOrder {
		for _, want := range r.Auth {
			if want == k {
				ch = append(ch, kinds[k])
			}
		}
	}
	return ch
}
