// Package userjson reads the JSON object Django's side writes for a user: a ticket's
// value in Redis (package ticket) and django_canal's /auth/ answer (auth.Django), both
// made by django_canal.tickets.ticket_claims.
package userjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/canal-rt/canal"
)

// Decode parses a user object strictly, since an object it cannot read fully must not
// authenticate anyone: b must be one JSON object with a non-empty "username" string and
// an "id" that is a non-empty string or an integer (no fraction or exponent). The ID
// becomes text exactly as written, so 42 gives "42" and 9007199254740993 loses no digit.
// Every other key goes to Attrs, with numbers as json.Number. The errors say what is
// wrong and never quote the input.
func Decode(b []byte) (canal.User, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return canal.User{}, err
	}
	if m == nil {
		return canal.User{}, errors.New("not an object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return canal.User{}, errors.New("data after the object")
	}
	var u canal.User
	switch id := m["id"].(type) {
	case json.Number:
		if !Int(string(id)) {
			return canal.User{}, errors.New(`"id" is not an integer`)
		}
		u.ID = string(id)
	case string:
		u.ID = id
	}
	if u.ID == "" {
		return canal.User{}, errors.New(`"id" missing, empty or not a number or string`)
	}
	name, _ := m["username"].(string)
	if name == "" {
		return canal.User{}, errors.New(`"username" missing, empty or not a string`)
	}
	u.Username = name
	delete(m, "id")
	delete(m, "username")
	if len(m) > 0 {
		u.Attrs = m
	}
	return u, nil
}

// Int reports whether a JSON number literal is an integer: "-"? digits, no fraction or
// exponent. Django never writes 42.0 for a key; refusing it avoids guessing whether
// "42.0" and "42" are the same user.
func Int(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
