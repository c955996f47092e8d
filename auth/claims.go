package auth

import (
	"encoding/json"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/userjson"
)

// maxToken is the longest credential SimpleJWT and Signed read, in bytes. Django's
// tokens for one user are a few hundred bytes; the limit keeps a hostile handshake
// from costing a signature check over megabytes.
const maxToken = 8 << 10

// claimMap turns a verified JSON object into a user: the one mapping SimpleJWT and
// Signed share.
type claimMap struct {
	what     string          // "simplejwt token", "signed token": for errors
	ids      []string        // claims tried in order for the user's primary key
	username string          // claim holding the username, if any
	drop     map[string]bool // claims already checked, kept out of Attrs
}

// user maps m, which it takes over: the claims that remain become Attrs.
//
// The user id may be a JSON integer or a non-empty string; it becomes ID exactly as
// written (42 → "42", a UUID as it is). Numbers must have been decoded as json.Number.
func (c *claimMap) user(m map[string]any) (canal.User, error) {
	var u canal.User
	idClaim := ""
	for _, name := range c.ids {
		if v, ok := m[name]; ok {
			id, err := c.id(name, v)
			if err != nil {
				return canal.User{}, err
			}
			u.ID, idClaim = id, name
			break
		}
	}
	if idClaim == "" {
		return canal.User{}, fmt.Errorf("%w: %s has no %q claim", ErrInvalid, c.what, c.ids[0])
	}
	delete(m, idClaim)
	if v, ok := m[c.username]; ok && c.username != "" {
		name, ok := v.(string)
		if !ok {
			return canal.User{}, fmt.Errorf("%w: %s: claim %q is not a string", ErrInvalid, c.what, c.username)
		}
		u.Username = name
		delete(m, c.username)
	}
	for k := range c.drop {
		delete(m, k)
	}
	if len(m) > 0 {
		u.Attrs = m
	}
	return u, nil
}

// id reads a user id claim: an integer or a non-empty string.
func (c *claimMap) id(name string, v any) (string, error) {
	switch id := v.(type) {
	case json.Number:
		if userjson.Int(string(id)) {
			return string(id), nil
		}
	case string:
		if id != "" {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: %s: claim %q is not an integer or a non-empty string", ErrInvalid, c.what, name)
}
