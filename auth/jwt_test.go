package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
)

const testSecret = "django-insecure-test-secret-ünïcode"

// accessClaims are the claims of a simplejwt access token for user 42 with custom
// claims, as a TokenObtainPairSerializer.get_token override adds them.
func accessClaims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"token_type": "access",
		"exp":        now.Add(5 * time.Minute).Unix(),
		"iat":        now.Unix(),
		"jti":        "0123456789abcdef0123456789abcdef",
		"user_id":    42,
		"username":   "alice",
		"is_staff":   true,
		"groups":     []string{"editors"},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkRefused asserts that err wraps ErrInvalid and quotes no part of the token.
func checkRefused(t *testing.T, token string, u canal.User, err error) {
	t.Helper()
	if !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("got (%+v, %v); want an error wrapping auth.ErrInvalid", u, err)
	}
	if u.Authenticated() {
		t.Errorf("refused token gave user %+v", u)
	}
	checkNoSecret(t, err.Error(), token)
}

// checkNoSecret asserts msg holds neither the token nor any piece of it longer than 8
// bytes (a JWT's segments, a signed value's payload or signature).
func checkNoSecret(t *testing.T, msg, token string) {
	t.Helper()
	if token != "" && strings.Contains(msg, token) {
		t.Fatalf("error text contains the token: %s", msg)
	}
	for _, part := range strings.FieldsFunc(token, func(r rune) bool { return r == '.' || r == ':' }) {
		if len(part) > 8 && strings.Contains(msg, part) {
			t.Fatalf("error text contains part %q of the token: %s", part, msg)
		}
	}
}

func mustJWT(t testing.TB, o auth.JWTOptions) auth.Verifier {
	t.Helper()
	v, err := auth.SimpleJWT(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSimpleJWTAccepts(t *testing.T) {
	t.Parallel()
	v := mustJWT(t, auth.JWTOptions{SigningKey: testSecret})
	hs := func(mod func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodHS256, []byte(testSecret), accessClaims(mod))
	}
	for _, c := range []struct {
		name  string
		token string
		want  canal.User
	}{
		{"access", hs(nil), canal.User{ID: "42", Username: "alice", Attrs: map[string]any{
			"jti": "0123456789abcdef0123456789abcdef", "is_staff": true, "groups": []any{"editors"},
		}}},
		{"uuid key", hs(func(c jwt.MapClaims) {
			c["user_id"] = "3f1c2b9e-4d5a-4c6b-8e7f-0a1b2c3d4e5f"
			delete(c, "username")
			delete(c, "is_staff")
			delete(c, "groups")
		}), canal.User{ID: "3f1c2b9e-4d5a-4c6b-8e7f-0a1b2c3d4e5f", Attrs: map[string]any{"jti": "0123456789abcdef0123456789abcdef"}}},
		{"key past 2^53", hs(func(c jwt.MapClaims) {
			c["user_id"] = json.Number("9007199254740993")
			delete(c, "is_staff")
			delete(c, "groups")
		}), canal.User{ID: "9007199254740993", Username: "alice", Attrs: map[string]any{"jti": "0123456789abcdef0123456789abcdef"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := v(context.Background(), c.token)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(u, c.want) {
				t.Fatalf("got %#v\nwant %#v", u, c.want)
			}
		})
	}
}

func TestSimpleJWTRefuses(t *testing.T) {
	t.Parallel()
	rsaPriv, rsaPEM := rsaPair(t)
	hs := func(mod func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodHS256, []byte(testSecret), accessClaims(mod))
	}
	valid := hs(nil)
	flip := func(tok string, seg int) string {
		parts := strings.Split(tok, ".")
		b := []byte(parts[seg])
		i := len(b) / 2
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		parts[seg] = string(b)
		return strings.Join(parts, ".")
	}
	// "none": the library refuses to sign with it unless told this is unsafe.
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, accessClaims(nil))
	hsOpts := auth.JWTOptions{SigningKey: testSecret}
	for _, c := range []struct {
		name  string
		opts  auth.JWTOptions
		token string
		why   string
	}{
		{"refresh token", hsOpts, hs(func(c jwt.MapClaims) { c["token_type"] = "refresh" }), `type "refresh"; want access`},
		{"no type", hsOpts, hs(func(c jwt.MapClaims) { delete(c, "token_type") }), `no "token_type"`},
		{"no jti", hsOpts, hs(func(c jwt.MapClaims) { delete(c, "jti") }), `no "jti"`},
		{"no exp", hsOpts, hs(func(c jwt.MapClaims) { delete(c, "exp") }), "lacks a required claim"},
		{"expired", hsOpts, hs(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "expired"},
		{"expired past leeway", auth.JWTOptions{SigningKey: testSecret, Leeway: 30 * time.Second},
			hs(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "expired"},
		{"not valid yet", hsOpts, hs(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), "not valid yet"},
		{"issued in the future", hsOpts, hs(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() }), "issued in the future"},
		{"exp not a number", hsOpts, hs(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), "invalid claims"},
		{"no user id", hsOpts, hs(func(c jwt.MapClaims) { delete(c, "user_id") }), `no "user_id"`},
		{"fractional user id", hsOpts, hs(func(c jwt.MapClaims) { c["user_id"] = 42.5 }), "not an integer"},
		{"empty user id", hsOpts, hs(func(c jwt.MapClaims) { c["user_id"] = "" }), "not an integer"},
		{"list user id", hsOpts, hs(func(c jwt.MapClaims) { c["user_id"] = []int{1} }), "not an integer"},
		{"username not a string", hsOpts, hs(func(c jwt.MapClaims) { c["username"] = 7 }), `"username" is not a string`},
		{"wrong key", hsOpts, sign(t, jwt.SigningMethodHS256, []byte("another secret"), accessClaims(nil)), "bad signature"},
		{"tampered payload", hsOpts, flip(valid, 1), ""},
		{"tampered signature", hsOpts, flip(valid, 2), "bad signature"},
		{"HS512 for HS256", hsOpts, sign(t, jwt.SigningMethodHS512, []byte(testSecret), accessClaims(nil)), "another algorithm than HS256"},
		{"none", hsOpts, none, "another algorithm"},
		{"none, no signature", hsOpts, strings.TrimSuffix(none, "."), "malformed"},
		{"public key as HMAC secret", auth.JWTOptions{Algorithm: "RS256", VerifyingKey: rsaPEM},
			sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), accessClaims(nil)), "another algorithm than RS256"},
		{"RS256 for HS256", hsOpts, sign(t, jwt.SigningMethodRS256, rsaPriv, accessClaims(nil)), "another algorithm"},
		{"unknown alg", hsOpts, "eyJhbGciOiJYWDk5OSIsInR5cCI6IkpXVCJ9" + valid[strings.Index(valid, "."):], "names no known algorithm"},
		{"no audience", auth.JWTOptions{SigningKey: testSecret, Audience: "canal"}, valid, "lacks a required claim"},
		{"other audience", auth.JWTOptions{SigningKey: testSecret, Audience: "canal"},
			hs(func(c jwt.MapClaims) { c["aud"] = []string{"billing", "mail"} }), "audience"},
		{"other issuer", auth.JWTOptions{SigningKey: testSecret, Issuer: "https://a.example"},
			hs(func(c jwt.MapClaims) { c["iss"] = "https://b.example" }), "issuer"},
		{"empty", hsOpts, "", "malformed"},
		{"two segments", hsOpts, valid[:strings.LastIndex(valid, ".")], "malformed"},
		{"garbage", hsOpts, "not.a.jwt", "malformed"},
		{"not JSON", hsOpts, "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "malformed"},
		{"over 8 KiB", hsOpts, hs(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 8<<10) }), "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := mustJWT(t, c.opts)
			u, err := v(context.Background(), c.token)
			checkRefused(t, c.token, u, err)
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q does not say %q", err, c.why)
			}
		})
	}
}

// Every one-character change of a valid token is refused: replaced by any URL-safe
// character or '.', or deleted. The last digit of a segment has spare bits; a decoder
// that ignored them would accept a changed token.
func TestSimpleJWTEveryChange(t *testing.T) {
	t.Parallel()
	v := mustJWT(t, auth.JWTOptions{SigningKey: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), accessClaims(nil))
	checkEveryChange(t, v, tok)
}

// checkEveryChange asserts that v accepts tok and refuses every string one edit away.
func checkEveryChange(t *testing.T, v auth.Verifier, tok string) {
	t.Helper()
	ctx := context.Background()
	if _, err := v(ctx, tok); err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:="
	tried := 0
	for i := range len(tok) {
		variants := []string{tok[:i] + tok[i+1:]}
		for _, c := range []byte(alphabet) {
			if c != tok[i] {
				variants = append(variants, tok[:i]+string(c)+tok[i+1:])
			}
		}
		for _, m := range variants {
			tried++
			if u, err := v(ctx, m); err == nil {
				t.Fatalf("accepted %q, %q changed at %d, as %+v", m, tok, i, u)
			}
		}
	}
	t.Logf("%d changed tokens refused", tried)
}

func TestSimpleJWTClaimsOptions(t *testing.T) {
	t.Parallel()
	v := mustJWT(t, auth.JWTOptions{
		SigningKey: testSecret, Audience: "canal", Issuer: "https://a.example", Leeway: time.Minute,
		UserIDClaim: "uid", UsernameClaim: "name", TokenTypeClaim: "typ", JTIClaim: "id",
		TokenTypes: []string{"access", "sliding"},
	})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{
		"typ": "sliding", "exp": time.Now().Add(-30 * time.Second).Unix(), "id": "j1",
		"uid": "7", "name": "bob", "aud": []string{"billing", "canal"}, "iss": "https://a.example",
		"user_id": 99, "sub": "7",
	})
	u, err := v(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := canal.User{ID: "7", Username: "bob", Attrs: map[string]any{"id": "j1", "user_id": json.Number("99"), "sub": "7"}}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("got %#v\nwant %#v", u, want)
	}
}

func TestSimpleJWTContext(t *testing.T) {
	t.Parallel()
	v := mustJWT(t, auth.JWTOptions{SigningKey: testSecret})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v(ctx, sign(t, jwt.SigningMethodHS256, []byte(testSecret), accessClaims(nil))); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want context.Canceled", err)
	}
}

func pemOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func rsaPair(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k, pemOf(t, &k.PublicKey)
}

func TestSimpleJWTKeyPairs(t *testing.T) {
	t.Parallel()
	rsa1, rsaPEM := rsaPair(t)
	rsa2, _ := rsaPair(t)
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec256b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	_, edPriv2, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		alg       string
		method    jwt.SigningMethod
		pub       string
		key, evil any
	}{
		{"RS256", jwt.SigningMethodRS256, rsaPEM, rsa1, rsa2},
		{"RS512", jwt.SigningMethodRS512, rsaPEM, rsa1, rsa2},
		{"ES256", jwt.SigningMethodES256, pemOf(t, &ec256.PublicKey), ec256, ec256b},
		{"ES384", jwt.SigningMethodES384, pemOf(t, &ec384.PublicKey), ec384, ec256},
		{"EdDSA", jwt.SigningMethodEdDSA, pemOf(t, edPub), edPriv, edPriv2},
	} {
		t.Run(c.alg, func(t *testing.T) {
			t.Parallel()
			v := mustJWT(t, auth.JWTOptions{Algorithm: c.alg, VerifyingKey: c.pub})
			u, err := v(context.Background(), sign(t, c.method, c.key, accessClaims(nil)))
			if err != nil || u.ID != "42" || u.Username != "alice" || !u.Bool("is_staff") {
				t.Fatalf("got (%+v, %v)", u, err)
			}
			var evil string
			if c.alg == "ES384" {
				evil = sign(t, jwt.SigningMethodES256, c.evil, accessClaims(nil))
			} else {
				evil = sign(t, c.method, c.evil, accessClaims(nil))
			}
			u, err = v(context.Background(), evil)
			checkRefused(t, evil, u, err)
		})
	}
}

func TestSimpleJWTOptionErrors(t *testing.T) {
	t.Parallel()
	_, rsaPEM := rsaPair(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, c := range []struct {
		name string
		opts auth.JWTOptions
		want string
	}{
		{"zero value", auth.JWTOptions{}, "JWTOptions.SigningKey is empty"},
		{"none", auth.JWTOptions{Algorithm: "none", SigningKey: "x"}, `Algorithm "none" is not supported`},
		{"lower case", auth.JWTOptions{Algorithm: "hs256", SigningKey: "x"}, `Algorithm "hs256" is not supported`},
		{"PEM as secret", auth.JWTOptions{SigningKey: rsaPEM}, "SigningKey looks like a PEM key"},
		{"HS with VerifyingKey", auth.JWTOptions{SigningKey: "x", VerifyingKey: rsaPEM}, "VerifyingKey is set"},
		{"RS without key", auth.JWTOptions{Algorithm: "RS256"}, "VerifyingKey is empty"},
		{"RS with SigningKey", auth.JWTOptions{Algorithm: "RS256", SigningKey: "x", VerifyingKey: rsaPEM}, "SigningKey is set"},
		{"RS with garbage", auth.JWTOptions{Algorithm: "RS256", VerifyingKey: "not pem"}, "not an RSA public key"},
		{"ES with RSA key", auth.JWTOptions{Algorithm: "ES256", VerifyingKey: rsaPEM}, "not an EC public key"},
		{"ES256 with P-384", auth.JWTOptions{Algorithm: "ES256", VerifyingKey: pemOf(t, &ec.PublicKey)}, "384-bit curve; ES256 needs P-256"},
		{"EdDSA with RSA key", auth.JWTOptions{Algorithm: "EdDSA", VerifyingKey: rsaPEM}, "not an Ed25519 public key"},
		{"negative leeway", auth.JWTOptions{SigningKey: "x", Leeway: -time.Second}, "Leeway is negative"},
		{"empty type", auth.JWTOptions{SigningKey: "x", TokenTypes: []string{"access", ""}}, "TokenTypes has an empty type"},
		{"same claims", auth.JWTOptions{SigningKey: "x", UserIDClaim: "u", UsernameClaim: "u"}, "both \"u\""},
	} {
		v, err := auth.SimpleJWT(c.opts)
		if err == nil || v != nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "auth: ") {
			t.Errorf("%s: got (%v, %v); want an error saying %q", c.name, v != nil, err, c.want)
		}
	}
}

func BenchmarkSimpleJWT(b *testing.B) {
	v := mustJWT(b, auth.JWTOptions{SigningKey: testSecret})
	tok := sign(b, jwt.SigningMethodHS256, []byte(testSecret), accessClaims(nil))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
