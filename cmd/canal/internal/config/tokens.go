package config

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/middleware"
)

// The built-in token kinds; [auth.django] kinds add theirs.
const (
	KindJWT    = "jwt"
	KindSigned = "signed"
)

// Kinds returns the credential kinds the configuration turns on, in the order a
// route's default auth lists them: session, ticket, then the token kinds.
func (c *Config) Kinds() []string {
	var ks []string
	if c.Auth.Session != nil {
		ks = append(ks, KindSession)
	}
	if c.Auth.Ticket != nil {
		ks = append(ks, KindTicket)
	}
	ks = append(ks, c.TokenKinds()...)
	return ks
}

// TokenKinds returns the configured token kinds: jwt, signed, then [auth.django]'s.
func (c *Config) TokenKinds() []string {
	var ks []string
	if c.Auth.JWT != nil {
		ks = append(ks, KindJWT)
	}
	if c.Auth.Signed != nil {
		ks = append(ks, KindSigned)
	}
	if d := c.Auth.Django; d != nil {
		ks = append(ks, d.Kinds...)
	}
	return ks
}

// IsToken reports whether kind is a token kind (jwt, signed or a Django kind).
func (c *Config) IsToken(kind string) bool { return kind != KindSession && kind != KindTicket }

// JWTOptions, SignedOptions and DjangoOptions are the auth options of the token
// kinds, secrets included; the app builds its verifiers from them, and validation
// builds them once to report their errors.
func (c *Config) JWTOptions() auth.JWTOptions {
	j := c.Auth.JWT
	return auth.JWTOptions{Algorithm: j.Algorithm, SigningKey: c.JWTKey, VerifyingKey: j.VerifyingKey,
		Audience: j.Audience, Issuer: j.Issuer, Leeway: j.Leeway.Duration,
		UserIDClaim: j.UserIDClaim, UsernameClaim: j.UsernameClaim, TokenTypes: j.TokenTypes}
}

// SignedOptions: see JWTOptions.
func (c *Config) SignedOptions() auth.SignedOptions {
	s := c.Auth.Signed
	return auth.SignedOptions{Key: c.SigningKey, Fallbacks: c.SigningOldKey, Salt: s.Salt, Algorithm: s.Algorithm,
		MaxAge: s.MaxAge.Duration, UserIDKey: s.UserIDKey, UsernameKey: s.UsernameKey}
}

// DjangoOptions: see JWTOptions.
func (c *Config) DjangoOptions(kind string) auth.DjangoOptions {
	return auth.DjangoOptions{URL: c.Auth.Django.URL, Token: c.SessionToken, Kind: kind, Timeout: c.Django.Timeout.Duration}
}

// TokenOptions returns how tokens travel to a route (anonymous routes cannot wait
// for a first message).
func (c *Config) TokenOptions(anonymous bool) middleware.TokenOptions {
	t := c.Auth.Token
	o := middleware.TokenOptions{Param: t.Param, Subprotocol: t.Subprotocol, Anonymous: anonymous}
	for _, name := range t.Transports {
		switch name {
		case "query":
			o.Transports |= middleware.TransportQuery
		case "subprotocol":
			o.Transports |= middleware.TransportSubprotocol
		case "first_message":
			if !anonymous {
				o.Transports |= middleware.TransportFirstMessage
			}
		}
	}
	return o
}

// authMsg is an auth package error without its package prefix.
func authMsg(err error) string {
	s := err.Error()
	for _, p := range []string{"auth: SimpleJWT: ", "auth: Signed: ", "auth: Django: ", "auth: ", "middleware: Token: ", "middleware: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

var reservedKinds = []string{KindSession, KindTicket, KindJWT, KindSigned}

func (c *Config) validateTokens(v *validator) {
	a := &c.Auth
	for i, tr := range a.Token.Transports {
		if !slices.Contains(transports, tr) {
			v.errf(fmt.Sprintf("auth.token.transports[%d]", i), "%q is not one of %s", tr, strings.Join(transports, ", "))
		}
	}
	nop := auth.Verifier(func(context.Context, string) (canal.User, error) { return canal.User{}, auth.ErrInvalid })
	if _, err := middleware.Token(nop, c.TokenOptions(false)); err != nil {
		v.errf("auth.token", "%s", authMsg(err))
	}
	if j := a.JWT; j != nil {
		hs := j.Algorithm == "" || strings.HasPrefix(j.Algorithm, "HS")
		switch {
		case hs && c.JWTKey == "":
			v.errf("auth.jwt", "needs the environment variable %s (SIMPLE_JWT's SIGNING_KEY, by default Django's SECRET_KEY)", EnvJWTKey)
		default:
			if _, err := auth.SimpleJWT(c.JWTOptions()); err != nil {
				v.optionErr("auth.jwt", "JWTOptions.", authMsg(err))
			}
		}
	}
	if s := a.Signed; s != nil {
		switch {
		case c.SigningKey == "":
			v.errf("auth.signed", "needs the environment variable %s (Django's SECRET_KEY, or the key= it signs with)", EnvSigningKey)
		case s.MaxAge.Duration <= 0:
			v.errf("auth.signed.max_age", "required: how old a token may be (signing.loads' max_age), e.g. \"1m\"")
		default:
			if _, err := auth.Signed(c.SignedOptions()); err != nil {
				v.optionErr("auth.signed", "SignedOptions.", authMsg(err))
			}
		}
	}
	if d := a.Django; d != nil {
		if c.SessionToken == "" {
			v.errf("auth.django", "needs the environment variable %s (Django's REALTIME_SESSION_TOKEN)", EnvSessionToken)
		}
		if d.URL == "" {
			v.errf("auth.django.url", "missing: django_canal's credential endpoint, e.g. http://127.0.0.1:8000/auth/")
		} else {
			checkHTTPURL(v, "auth.django.url", d.URL)
		}
		if len(d.Kinds) == 0 {
			v.errf("auth.django.kinds", "missing: the kinds Django checks (REALTIME_AUTH_KINDS), e.g. [\"drf\", \"sesame\"]")
		}
		if d.Cache.Duration < 0 || d.Cache.Duration > auth.MaxCacheTTL {
			v.errf("auth.django.cache", "%s is not between 0 and %s", d.Cache.Duration, auth.MaxCacheTTL)
		}
		seen := map[string]bool{}
		for i, k := range d.Kinds {
			key := fmt.Sprintf("auth.django.kinds[%d]", i)
			switch {
			case slices.Contains(reservedKinds, k):
				v.errf(key, "%q is one of canal's own kinds (%s): name Django's other kinds here", k, strings.Join(reservedKinds, ", "))
			case seen[k]:
				v.errf(key, "%q is listed twice", k)
			case c.SessionToken != "" && d.URL != "":
				if _, err := auth.Django(c.DjangoOptions(k)); err != nil {
					v.errf(key, "%s", authMsg(err))
				}
			}
			seen[k] = true
		}
	}
}

// validateRouteAuth checks a route's credential kinds.
func (c *Config) validateRouteAuth(v *validator, r *Route, key string) {
	kinds := c.Kinds()
	tokens := false
	for j, k := range r.Auth {
		k2 := fmt.Sprintf("%s.auth[%d]", key, j)
		switch {
		case slices.Contains(kinds, k):
			tokens = tokens || c.IsToken(k)
		case slices.Contains(reservedKinds, k):
			v.errf(k2, "%q is not configured: add an [auth.%s] table", k, k)
		default:
			v.errf(k2, "%q is not a credential kind (session, ticket, jwt, signed, or one of auth.django.kinds)", k)
		}
	}
	switch {
	case r.Anonymous && slices.Contains(r.Auth, KindTicket):
		v.errf(key+".auth", "ticket auth always needs a ticket, so anonymous = true cannot hold: drop \"ticket\" or anonymous")
	case tokens && slices.Contains(r.Auth, KindTicket):
		v.errf(key+".auth", "a route takes tickets or tokens, not both (each waits for its own credential)")
	case tokens && r.Anonymous && !c.Auth.Token.defaulted && slices.Contains(c.Auth.Token.Transports, "first_message"):
		v.errf(key+".auth", "anonymous = true cannot wait for a first-message token: drop first_message from auth.token.transports or anonymous")
	}
	if len(r.Auth) == 0 && !r.Anonymous {
		v.errf(key, "no credential kind configured and anonymous = false: nobody could connect (add an [auth.*] table, or set anonymous = true)")
	}
}

// optionErr reports an auth option error under its TOML key when the message names
// the Go field ("JWTOptions.Algorithm \"none\" is ..." becomes auth.jwt.algorithm:
// "none" is ...).
func (v *validator) optionErr(table, prefix, msg string) {
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		v.errf(table, "%s", msg)
		return
	}
	field, after, _ := strings.Cut(rest, " ")
	var key strings.Builder
	for i, r := range field {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				key.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		key.WriteRune(r)
	}
	v.errf(table+"."+key.String(), "%s", after)
}
