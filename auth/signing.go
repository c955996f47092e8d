package auth

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/userjson"
)

// maxPayload bounds the JSON a compressed signed token may inflate to. The signature
// is checked first, so only a holder of the key can send a zip bomb; the bound makes
// even that cheap.
const maxPayload = 64 << 10

// SignedOptions configure [Signed]. The names follow django.core.signing's arguments.
// The zero value is not usable: Key and an age policy are required.
type SignedOptions struct {
	// Key is the key the token was signed with: Django's SECRET_KEY, or the key= given
	// to signing.dumps or the Signer. Required.
	Key string

	// Fallbacks are older keys still accepted, as SECRET_KEY_FALLBACKS (Django 4.1+)
	// lets a site rotate SECRET_KEY without logging everyone out. Tried after Key.
	Fallbacks []string

	// Salt is the salt= of dumps or of the Signer: "django.core.signing" by default,
	// the salt of signing.dumps and signing.loads. A Signer or TimestampSigner made
	// without salt uses its class path: "django.core.signing.TimestampSigner".
	// Give every use of signing its own salt on the Django side, and the same one here.
	Salt string

	// Sep is sep=, the separator of value, timestamp and signature: ":" by default. As
	// in Django, it may not consist only of A-z, 0-9, '-', '_' and '='.
	Sep string

	// Algorithm is algorithm=, the hash of the HMAC: "sha256" by default (Django 3.1 and
	// later), or "sha1" (Django 3.0 and earlier, or DEFAULT_HASHING_ALGORITHM = "sha1"
	// in 3.1/3.2), "sha224", "sha384", "sha512". Only this one is accepted: Django 3.2
	// also accepts sha1 signatures while verifying sha256 ones, Signed does not.
	Algorithm string

	// MaxAge is max_age: a token signed longer ago than this is refused. Required for
	// timestamped tokens, unless NoMaxAge says on purpose that any age will do, as
	// loads without max_age does. A token that never expires is a password that leaks
	// with every log line and browser history entry that records it: keep MaxAge as
	// short as the client's path from page to socket (a minute is plenty). A timestamp
	// in the future passes, as in Django: only a holder of the key can write one.
	MaxAge   time.Duration
	NoMaxAge bool

	// Value says the token is Signer.sign(value) or TimestampSigner.sign(value) rather
	// than signing.dumps(obj): the value, as text, is the user's ID. NoTimestamp says it
	// was made by Signer (sign or sign_object) rather than TimestampSigner (or dumps):
	// it carries no time, so it requires NoMaxAge.
	Value       bool
	NoTimestamp bool

	// UserIDKey is the key of the user's primary key when the payload is a JSON object:
	// by default "user_id", or else "id". UsernameKey is the key of the username:
	// "username" by default, optional in the payload.
	UserIDKey   string
	UsernameKey string
}

// hashes are the algorithms Signed takes, by hashlib name.
var hashes = map[string]func() hash.Hash{
	"sha1": sha1.New, "sha224": sha256.New224, "sha256": sha256.New,
	"sha384": sha512.New384, "sha512": sha512.New,
}

// signerKey computes Django's signature for one key: base64 of HMAC(H(salt + "signer" +
// key), value), as salted_hmac does. The derived key's HMACs are pooled, since setting
// one up costs two hash blocks and Reset brings it back to that state.
type signerKey struct {
	macs sync.Pool
}

func newSignerKey(h func() hash.Hash, salt, key string) *signerKey {
	d := h()
	d.Write([]byte(salt + "signer" + key))
	derived := d.Sum(nil)
	return &signerKey{macs: sync.Pool{New: func() any { return hmac.New(h, derived) }}}
}

// signature appends the base64 signature of value to dst.
func (k *signerKey) signature(dst []byte, value string) []byte {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, value)
	var sum [sha512.Size]byte
	raw := m.Sum(sum[:0])
	k.macs.Put(m)
	return base64.RawURLEncoding.AppendEncode(dst, raw)
}

// signedVerifier holds what Signed prepared once.
type signedVerifier struct {
	sep       string
	keys      []*signerKey // Key, then Fallbacks
	sigLen    int          // length of a signature in base64
	timestamp bool
	maxAge    time.Duration // 0: no age check
	value     bool
	claims    claimMap
}

// Signed returns a Verifier for tokens made by django.core.signing, checked as
// signing.loads (or Signer/TimestampSigner.unsign) checks them: the HMAC over
// everything before the last separator, with Key and then each of Fallbacks, then the
// age against MaxAge.
//
// By default the token is signing.dumps(obj, salt=…, compress=…): base64 JSON, zlib
// compressed when it starts with '.' (inflated to at most 64 KiB), with a base62
// timestamp. A JSON object gives the user: its "user_id" (or "id") is the ID (an
// integer or a string), its "username" the Username, and its other keys Attrs, numbers
// as json.Number. A JSON string or integer is the ID alone. With Value set, the token
// is sign(value) and the value itself is the ID.
//
// A token that is malformed, longer than 8 KiB, tampered with, signed with another key,
// salt or algorithm, older than MaxAge, or whose payload names no user gives an error
// wrapping [ErrInvalid]; the error says which and never contains the token. Signed
// returns an error naming the option when opts are incomplete or contradictory.
func Signed(opts SignedOptions) (Verifier, error) {
	v, err := newSigned(opts)
	if err != nil {
		return nil, err
	}
	return v.verify, nil
}

func newSigned(opts SignedOptions) (*signedVerifier, error) {
	if opts.Key == "" {
		return nil, errors.New("auth: SignedOptions.Key is empty: set Django's SECRET_KEY, or the key= the token was signed with")
	}
	for i, k := range opts.Fallbacks {
		if k == "" {
			return nil, fmt.Errorf("auth: SignedOptions.Fallbacks[%d] is empty", i)
		}
	}
	if opts.Salt == "" {
		opts.Salt = "django.core.signing"
	}
	if opts.Sep == "" {
		opts.Sep = ":"
	}
	if unsafeSep(opts.Sep) {
		return nil, fmt.Errorf("auth: SignedOptions.Sep %q is unsafe: it may not consist only of A-z, 0-9, '-', '_' and '=' (Django refuses it too)", opts.Sep)
	}
	if opts.Algorithm == "" {
		opts.Algorithm = "sha256"
	}
	h, ok := hashes[opts.Algorithm]
	if !ok {
		return nil, fmt.Errorf("auth: SignedOptions.Algorithm %q is not supported: use sha256, sha1, sha224, sha384 or sha512", opts.Algorithm)
	}
	switch {
	case opts.MaxAge < 0:
		return nil, fmt.Errorf("auth: SignedOptions.MaxAge is negative (%v)", opts.MaxAge)
	case opts.NoTimestamp && opts.MaxAge > 0:
		return nil, errors.New("auth: SignedOptions.MaxAge is set with NoTimestamp: a Signer token carries no time to check it against (use TimestampSigner on the Django side)")
	case opts.NoTimestamp && !opts.NoMaxAge:
		return nil, errors.New("auth: SignedOptions.NoTimestamp accepts tokens that never expire: set NoMaxAge to say so")
	case opts.MaxAge > 0 && opts.NoMaxAge:
		return nil, errors.New("auth: SignedOptions.MaxAge and NoMaxAge are both set")
	case opts.MaxAge == 0 && !opts.NoMaxAge:
		return nil, errors.New("auth: SignedOptions.MaxAge is 0: set the max_age your Django code would pass to loads, or NoMaxAge to accept tokens of any age")
	}
	ids := []string{"user_id", "id"}
	if opts.UserIDKey != "" {
		ids = []string{opts.UserIDKey}
	}
	if opts.UsernameKey == "" {
		opts.UsernameKey = "username"
	}
	if opts.UsernameKey == ids[0] {
		return nil, fmt.Errorf("auth: SignedOptions.UserIDKey and UsernameKey are both %q", ids[0])
	}
	v := &signedVerifier{
		sep:       opts.Sep,
		sigLen:    base64.RawURLEncoding.EncodedLen(h().Size()),
		timestamp: !opts.NoTimestamp,
		maxAge:    opts.MaxAge,
		value:     opts.Value,
		claims:    claimMap{what: "signed token", ids: ids, username: opts.UsernameKey},
	}
	for _, k := range append([]string{opts.Key}, opts.Fallbacks...) {
		v.keys = append(v.keys, newSignerKey(h, opts.Salt, k))
	}
	return v, nil
}

// unsafeSep mirrors Django's _SEP_UNSAFE, ^[A-z0-9-_=]*$ (A-z spans [\]^_` too).
func unsafeSep(sep string) bool {
	for i := 0; i < len(sep); i++ {
		c := sep[i]
		if !(c >= 'A' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '=') {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: signed token "+format, append([]any{ErrInvalid}, args...)...)
}

func (v *signedVerifier) verify(ctx context.Context, token string) (canal.User, error) {
	if err := ctx.Err(); err != nil {
		return canal.User{}, err
	}
	value, err := v.unsign(token, time.Now())
	if err != nil {
		return canal.User{}, err
	}
	if v.value {
		if value == "" {
			return canal.User{}, invalid("has an empty value")
		}
		return canal.User{ID: value}, nil
	}
	payload, err := decodePayload(value)
	if err != nil {
		return canal.User{}, err
	}
	switch p := payload.(type) {
	case map[string]any:
		return v.claims.user(p)
	case string:
		if p != "" {
			return canal.User{ID: p}, nil
		}
	case json.Number:
		if userjson.Int(string(p)) {
			return canal.User{ID: string(p)}, nil
		}
	}
	return canal.User{}, invalid("payload is not an object, a non-empty string or an integer")
}

// unsign checks the signature and the age, and returns the signed value without its
// timestamp, as TimestampSigner.unsign does.
func (v *signedVerifier) unsign(token string, now time.Time) (string, error) {
	if len(token) > maxToken {
		return "", invalid("longer than %d bytes", maxToken)
	}
	i := strings.LastIndex(token, v.sep)
	if i < 0 {
		return "", invalid("has no separator")
	}
	value, sig := token[:i], token[i+len(v.sep):]
	if !v.signed(value, sig) {
		return "", invalid("has a bad signature (tampered, or another key, salt or algorithm)")
	}
	if !v.timestamp {
		return value, nil
	}
	j := strings.LastIndex(value, v.sep)
	if j < 0 {
		return "", invalid("has no timestamp")
	}
	ts, ok := base62(value[j+len(v.sep):])
	if !ok {
		return "", invalid("has a malformed timestamp")
	}
	if v.maxAge > 0 {
		if age := now.Sub(time.Unix(ts, 0)); age > v.maxAge {
			return "", invalid("has expired (signed %v ago; MaxAge is %v)", age.Truncate(time.Second), v.maxAge)
		}
	}
	return value[:j], nil
}

// signed reports whether sig is the signature of value under one of the keys.
func (v *signedVerifier) signed(value, sig string) bool {
	if len(sig) != v.sigLen {
		return false
	}
	var buf [88]byte // base64 of the longest sum, sha512's
	for _, k := range v.keys {
		if subtle.ConstantTimeCompare(k.signature(buf[:0], value), []byte(sig)) == 1 {
			return true
		}
	}
	return false
}

// base62 decodes Django's b62_decode alphabet, with its optional '-'.
func base62(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case c >= 'A' && c <= 'Z':
			d = int64(c-'A') + 10
		case c >= 'a' && c <= 'z':
			d = int64(c-'a') + 36
		default:
			return 0, false
		}
		if n > (1<<63-1-d)/62 {
			return 0, false
		}
		n = n*62 + d
	}
	if neg {
		n = -n
	}
	return n, true
}

// decodePayload reverses sign_object: base64, zlib when the value starts with '.',
// then JSON read as Django reads it (bytes as Latin-1).
func decodePayload(value string) (any, error) {
	compressed := strings.HasPrefix(value, ".")
	if compressed {
		value = value[1:]
	}
	data, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return nil, invalid("payload is not base64")
	}
	if compressed {
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, invalid("payload is not zlib")
		}
		data, err = io.ReadAll(io.LimitReader(zr, maxPayload+1))
		if err != nil {
			return nil, invalid("payload is not zlib")
		}
		if len(data) > maxPayload {
			return nil, invalid("payload inflates past %d bytes", maxPayload)
		}
	}
	data = latin1(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var p any
	if err := dec.Decode(&p); err != nil {
		return nil, invalid("payload is not JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("payload has data after its JSON value")
	}
	return p, nil
}

// latin1 converts bytes Django decodes as Latin-1 to UTF-8. Django's JSON is ASCII
// (ensure_ascii), so this copies only what another serializer wrote.
func latin1(b []byte) []byte {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return b
	}
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out
}
