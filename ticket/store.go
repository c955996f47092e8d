package ticket

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/userjson"
)

// Store issues and consumes tickets.
//
// Implementations are safe for concurrent use, and Consume succeeds at most once per
// ticket however many callers race for it.
type Store interface {
	// Issue stores u under a new random ticket that expires after ttl (the store's
	// default when ttl <= 0) and returns the ticket. In production Django issues
	// tickets; Issue serves Go-side sign-in (demos) and tests.
	Issue(ctx context.Context, u canal.User, ttl time.Duration) (string, error)
	// Consume returns the user stored under ticket and deletes it, atomically.
	// It returns an error wrapping ErrInvalid when the ticket is malformed, unknown,
	// expired, already used or holds a malformed value, and one wrapping
	// canal.ErrUnavailable when the backing service fails.
	Consume(ctx context.Context, ticket string) (canal.User, error)
}

// ErrInvalid is returned for a ticket that is malformed, unknown, expired or already
// used. The cases are deliberately indistinguishable, so that a client probing
// tickets learns nothing.
var ErrInvalid = errors.New("ticket: invalid, expired or already used")

// Format constants, shared with the Django side.
const (
	// DefaultPrefix is prepended to the hash to form the Redis key.
	DefaultPrefix = "canal:ticket:"
	// DefaultTTL is the lifetime of a ticket issued with ttl <= 0, as Django's default.
	DefaultTTL = 10 * time.Second
	// MaxLen bounds the length of a ticket Consume accepts; longer input is rejected
	// before hashing or any I/O. New returns 43 characters.
	MaxLen = 512
	// randomBytes is the entropy of a ticket, as secrets.token_urlsafe(32).
	randomBytes = 32
)

// New returns a new random ticket: 32 bytes from crypto/rand, base64url without
// padding (43 characters), the format of Python's secrets.token_urlsafe(32).
func New() (string, error) {
	var b [randomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ticket: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Hash returns the lowercase hex SHA-256 of ticket: the part of the Redis key after
// the prefix. Only hashes are stored, so whoever reads the store cannot use them.
func Hash(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(sum[:])
}

// wellFormed reports whether t could be a ticket: 1 to MaxLen characters of the
// base64url alphabet. Anything else is rejected without touching the store.
func wellFormed(t string) bool {
	if len(t) == 0 || len(t) > MaxLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Encode returns the JSON value stored under a ticket: an object with "id",
// "username" and the entries of u.Attrs. An ID in canonical decimal form ("42") is
// written as a JSON number, as Django writes an integer primary key; any other ID as
// a string. Decode(Encode(u)) gives back u's ID and Username exactly.
func Encode(u canal.User) ([]byte, error) {
	if u.ID == "" {
		return nil, errors.New("ticket: encode: user has no ID")
	}
	if u.Username == "" {
		return nil, errors.New("ticket: encode: user has no username")
	}
	m := make(map[string]any, len(u.Attrs)+2)
	for k, v := range u.Attrs {
		if k == "id" || k == "username" {
			return nil, fmt.Errorf("ticket: encode: attribute %q collides with a user field", k)
		}
		m[k] = v
	}
	if canonicalInt(u.ID) {
		m["id"] = json.Number(u.ID)
	} else {
		m["id"] = u.ID
	}
	m["username"] = u.Username
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("ticket: encode: %w", err)
	}
	return b, nil
}

// Decode parses a value written by Django or Encode. It is strict, since a value it
// cannot read fully must not authenticate anyone: the value must be a JSON object with
// a non-empty "username" string and an "id" that is a non-empty string or an integer
// (no fraction or exponent). The ID becomes text exactly as written, so 42 gives "42"
// and 9007199254740993 loses no digit. Every other key goes to Attrs, with numbers as
// json.Number. Errors wrap ErrInvalid.
func Decode(b []byte) (canal.User, error) {
	u, err := userjson.Decode(b)
	if err != nil {
		return canal.User{}, fmt.Errorf("%w: malformed value: %v", ErrInvalid, err)
	}
	return u, nil
}

// canonicalInt reports whether s is an integer as Python's str(int) prints it, so
// that writing it as a JSON number and reading it back yields s again.
func canonicalInt(s string) bool {
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
		if digits == "0" {
			return false // Python never prints -0
		}
	}
	if digits == "" || len(digits) > 1 && digits[0] == '0' {
		return false
	}
	return userjson.Int(digits)
}

// unavailable wraps a backing-service failure so that errors.Is finds both
// canal.ErrUnavailable and the cause (a context error, a net error).
func unavailable(op string, err error) error {
	return fmt.Errorf("ticket: %s: %w: %w", op, canal.ErrUnavailable, err)
}

// ctxErr reports a context that is already done before any work, so that a
// cancelled caller consumes nothing.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ticket: %w", err)
	}
	return nil
}
