package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/canal-rt/canal"
)

// JWTOptions configure [SimpleJWT]. The names follow the SIMPLE_JWT settings of
// djangorestframework-simplejwt, so the Django side's settings carry over one to one.
// The zero value is not usable: a key is required.
type JWTOptions struct {
	// Algorithm is ALGORITHM: "HS256" (the default), "HS384", "HS512", "RS256",
	// "RS384", "RS512", "ES256", "ES384", "ES512" or "EdDSA". Only this algorithm is
	// accepted, whatever a token's header says: no algorithm confusion, no "none".
	Algorithm string

	// SigningKey is SIGNING_KEY, the shared secret of the HS algorithms: Django's
	// SECRET_KEY unless SIMPLE_JWT sets another. Required for HS*, and refused for
	// the others (a verifier needs no private key).
	SigningKey string

	// VerifyingKey is VERIFYING_KEY, the PEM public key (or certificate) of the RS, ES
	// and EdDSA algorithms. Required for those, refused for HS*.
	VerifyingKey string

	// Audience is AUDIENCE: when set, a token's "aud" must name it. Issuer is ISSUER:
	// when set, a token's "iss" must equal it. Tokens without the claim are refused.
	Audience string
	Issuer   string

	// Leeway is LEEWAY: the clock skew allowed when checking "exp" and "nbf". Default 0.
	Leeway time.Duration

	// UserIDClaim is USER_ID_CLAIM, the claim holding the user's primary key: "user_id"
	// by default. Its value may be a JSON integer or a string (a UUID key); it becomes
	// canal.User.ID as text. A token without it is refused.
	UserIDClaim string

	// UsernameClaim is the claim copied to canal.User.Username: "username" by default.
	// simplejwt does not write it by itself; add it in your TokenObtainPairSerializer's
	// get_token (token["username"] = user.username). Tokens without it are accepted,
	// with an empty Username.
	UsernameClaim string

	// TokenTypeClaim is TOKEN_TYPE_CLAIM: "token_type" by default. TokenTypes are the
	// types accepted, the token_type of AUTH_TOKEN_CLASSES: ["access"] by default, so
	// refresh tokens are refused; add "sliding" for SlidingToken.
	TokenTypeClaim string
	TokenTypes     []string

	// JTIClaim is JTI_CLAIM: "jti" by default. As simplejwt does, a token without it is
	// refused. It stays in Attrs, for a revocation list.
	JTIClaim string
}

// jwtKeys lists the algorithms SimpleJWT takes and how each reads its key.
var jwtKeys = map[string]func(o *JWTOptions) (any, error){
	"HS256": hmacKey, "HS384": hmacKey, "HS512": hmacKey,
	"RS256": rsaKey, "RS384": rsaKey, "RS512": rsaKey,
	"ES256": ecKey(256), "ES384": ecKey(384), "ES512": ecKey(521),
	"EdDSA": edKey,
}

func hmacKey(o *JWTOptions) (any, error) {
	switch {
	case o.SigningKey == "":
		return nil, fmt.Errorf("auth: JWTOptions.SigningKey is empty: %s verifies with SIMPLE_JWT's SIGNING_KEY, by default Django's SECRET_KEY", o.Algorithm)
	case o.VerifyingKey != "":
		return nil, fmt.Errorf("auth: JWTOptions.VerifyingKey is set: %s verifies with SigningKey; VerifyingKey is for RS, ES and EdDSA", o.Algorithm)
	case strings.Contains(o.SigningKey, "-----BEGIN"):
		// PyJWT refuses a PEM key as an HMAC secret too: it is the key confusion of
		// tokens signed with a public key.
		return nil, fmt.Errorf("auth: JWTOptions.SigningKey looks like a PEM key: %s takes a shared secret (Django's SECRET_KEY); set Algorithm and VerifyingKey for a key pair", o.Algorithm)
	}
	return []byte(o.SigningKey), nil
}

// publicPEM checks the options shared by the key-pair algorithms.
func publicPEM(o *JWTOptions) error {
	switch {
	case o.SigningKey != "":
		return fmt.Errorf("auth: JWTOptions.SigningKey is set: %s verifies with the public VerifyingKey; leave the private SIGNING_KEY to Django", o.Algorithm)
	case o.VerifyingKey == "":
		return fmt.Errorf("auth: JWTOptions.VerifyingKey is empty: %s needs SIMPLE_JWT's VERIFYING_KEY (a PEM public key)", o.Algorithm)
	}
	return nil
}

func rsaKey(o *JWTOptions) (any, error) {
	if err := publicPEM(o); err != nil {
		return nil, err
	}
	k, err := jwt.ParseRSAPublicKeyFromPEM([]byte(o.VerifyingKey))
	if err != nil {
		return nil, fmt.Errorf("auth: JWTOptions.VerifyingKey is not an RSA public key in PEM: %w", err)
	}
	return k, nil
}

func ecKey(bits int) func(o *JWTOptions) (any, error) {
	return func(o *JWTOptions) (any, error) {
		if err := publicPEM(o); err != nil {
			return nil, err
		}
		k, err := jwt.ParseECPublicKeyFromPEM([]byte(o.VerifyingKey))
		if err != nil {
			return nil, fmt.Errorf("auth: JWTOptions.VerifyingKey is not an EC public key in PEM: %w", err)
		}
		if got := k.Curve.Params().BitSize; got != bits {
			return nil, fmt.Errorf("auth: JWTOptions.VerifyingKey is on a %d-bit curve; %s needs P-%d", got, o.Algorithm, bits)
		}
		return k, nil
	}
}

func edKey(o *JWTOptions) (any, error) {
	if err := publicPEM(o); err != nil {
		return nil, err
	}
	k, err := jwt.ParseEdPublicKeyFromPEM([]byte(o.VerifyingKey))
	if err != nil {
		return nil, fmt.Errorf("auth: JWTOptions.VerifyingKey is not an Ed25519 public key in PEM: %w", err)
	}
	return k, nil
}

// jwtVerifier holds what SimpleJWT prepared once: parser, key, claim names.
type jwtVerifier struct {
	alg     string
	parser  *jwt.Parser
	keyFunc jwt.Keyfunc
	jti     string
	typ     string
	types   []string
	claims  claimMap
}

// SimpleJWT returns a Verifier for access tokens made by djangorestframework-simplejwt
// (AccessToken.for_user, TokenObtainPairView), checked as its JWTAuthentication checks
// them: the signature, with the one configured algorithm; "exp" present and not past;
// "nbf" and "iat", when present, not in the future (all three within Leeway); audience
// and issuer when configured; a "jti"; a token type in TokenTypes. Parsing and
// signature checks are github.com/golang-jwt/jwt/v5's.
//
// The user is the user id claim (ID), the username claim (Username), and in Attrs every
// further claim the token carries (is_staff, groups, a tenant, "jti"), numbers as
// json.Number; the claims checked here (exp, iat, nbf, iss, aud, the token type) are
// left out.
//
// Like simplejwt's JWTStatelessUserAuthentication, it does not check that the user
// still exists or is active, nor a blacklist: access tokens are short-lived
// (ACCESS_TOKEN_LIFETIME, 5 minutes by default) for that reason.
//
// A token that is malformed, longer than 8 KiB, tampered with, signed with another key
// or algorithm, expired, not yet valid, issued in the future, for another audience or
// issuer, of another type, or without jti or user id gives an error wrapping
// [ErrInvalid]; the error says which and never contains the token. SimpleJWT returns
// an error naming the setting when opts are incomplete or contradictory.
func SimpleJWT(opts JWTOptions) (Verifier, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = "HS256"
	}
	keyOf, ok := jwtKeys[opts.Algorithm]
	if !ok {
		return nil, fmt.Errorf("auth: JWTOptions.Algorithm %q is not supported: use HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512 or EdDSA", opts.Algorithm)
	}
	key, err := keyOf(&opts)
	if err != nil {
		return nil, err
	}
	if opts.Leeway < 0 {
		return nil, fmt.Errorf("auth: JWTOptions.Leeway is negative (%v)", opts.Leeway)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&opts.UserIDClaim, "user_id")
	def(&opts.UsernameClaim, "username")
	def(&opts.TokenTypeClaim, "token_type")
	def(&opts.JTIClaim, "jti")
	types := slices.Clone(opts.TokenTypes)
	if len(types) == 0 {
		types = []string{"access"}
	}
	if slices.Contains(types, "") {
		return nil, errors.New("auth: JWTOptions.TokenTypes has an empty type")
	}
	if opts.UserIDClaim == opts.UsernameClaim {
		return nil, fmt.Errorf("auth: JWTOptions.UserIDClaim and UsernameClaim are both %q", opts.UserIDClaim)
	}

	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{opts.Algorithm}),
		jwt.WithJSONNumber(), // ids past 2^53 keep every digit
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),       // PyJWT refuses an "iat" in the future too
		jwt.WithStrictDecoding(), // one spelling per token: no spare bits in the last base64 digit
		jwt.WithLeeway(opts.Leeway),
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	v := &jwtVerifier{
		alg:     opts.Algorithm,
		parser:  jwt.NewParser(popts...),
		keyFunc: func(*jwt.Token) (any, error) { return key, nil },
		jti:     opts.JTIClaim,
		typ:     opts.TokenTypeClaim,
		types:   types,
		claims: claimMap{
			what:     "simplejwt token",
			ids:      []string{opts.UserIDClaim},
			username: opts.UsernameClaim,
			drop: map[string]bool{
				"exp": true, "iat": true, "nbf": true, "iss": true, "aud": true,
				opts.TokenTypeClaim: true,
			},
		},
	}
	return v.verify, nil
}

func (v *jwtVerifier) verify(ctx context.Context, token string) (canal.User, error) {
	if err := ctx.Err(); err != nil {
		return canal.User{}, err
	}
	if len(token) > maxToken {
		return canal.User{}, fmt.Errorf("%w: simplejwt token longer than %d bytes", ErrInvalid, maxToken)
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, claims, v.keyFunc)
	if err != nil {
		return canal.User{}, fmt.Errorf("%w: simplejwt token %s", ErrInvalid, v.reason(tok, err))
	}
	if _, ok := claims[v.jti]; !ok {
		return canal.User{}, fmt.Errorf("%w: simplejwt token has no %q claim", ErrInvalid, v.jti)
	}
	typ, ok := claims[v.typ].(string)
	if !ok {
		return canal.User{}, fmt.Errorf("%w: simplejwt token has no %q claim", ErrInvalid, v.typ)
	}
	if !slices.Contains(v.types, typ) {
		return canal.User{}, fmt.Errorf("%w: simplejwt token is of type %.20q; want %s", ErrInvalid, typ, strings.Join(v.types, " or "))
	}
	return v.claims.user(claims)
}

// reason says why golang-jwt refused a token, in our words: its errors may quote parts
// of the token (a JSON syntax error's character), ours never do.
func (v *jwtVerifier) reason(tok *jwt.Token, err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "is malformed"
	case tok != nil && tok.Method != nil && tok.Method.Alg() != v.alg:
		return "is signed with another algorithm than " + v.alg
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "names no known algorithm"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "has a bad signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "is not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "was issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "is not for this audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "is from another issuer"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "lacks a required claim (exp, aud or iss)"
	}
	return "has invalid claims"
}
