package canal

import (
	"encoding/json"
	"math"
	"strconv"
)

// User is the identity attached to a connection by authentication middleware, for example
// a Django user authorized by a ticket. The zero value is the anonymous user.
//
// Attrs holds the further claims a verifier found (is_staff, email, groups, a tenant),
// as they arrive from JSON: bool, string, json.Number (or float64), []any and
// map[string]any. The typed accessors read them so that a permission check is one line:
//
//	if !u.Bool("is_staff") && u.Int64("tenant_id") != room.Tenant { ... }
//
// Every accessor follows one convention: it returns the zero value (false, "", 0, nil)
// when the claim is absent or does not convert exactly, never a guess. A check therefore
// fails closed as long as it grants nothing on a zero value: compare with a tenant,
// group or flag you expect, not with 0 or "". When absence must be told apart, read
// Attrs directly.
type User struct {
	ID       string         // Django's primary key as text ("42"); empty for anonymous
	Username string         // Django's username
	Attrs    map[string]any // further claims: is_staff, groups, permissions, ...
}

// Authenticated reports whether u identifies someone.
func (u User) Authenticated() bool { return u.ID != "" || u.Username != "" }

// Bool returns the named claim if it is a JSON boolean (Python's True/False), else
// false. Numbers and strings such as 1 or "true" are not booleans: false.
func (u User) Bool(name string) bool {
	b, _ := u.Attrs[name].(bool)
	return b
}

// String returns the named claim as text: a string as it is, an integer (a JSON number
// with no fraction or exponent, or a Go integer) in decimal, so that a key written as 42
// or "42" reads the same. Anything else, including fractions, booleans and lists,
// gives "".
func (u User) String(name string) string {
	switch v := u.Attrs[name].(type) {
	case string:
		return v
	case nil, bool, []any, map[string]any:
		return ""
	}
	if n, ok := toInt64(u.Attrs[name]); ok {
		return strconv.FormatInt(n, 10)
	}
	return ""
}

// Int64 returns the named claim as an integer: a JSON integer (json.Number, or a
// float64 with no fraction strictly within ±2^53, where float64 is still exact), a Go integer,
// or a string of decimal digits with an optional '-' ("42", as a primary key sent as
// text). Fractions, exponents, out-of-range values and anything else give 0.
func (u User) Int64(name string) int64 {
	n, _ := toInt64(u.Attrs[name])
	return n
}

// Strings returns the named claim if it is a list of strings ([]any from JSON, or
// []string), else nil. A list with one element of another type gives nil as a whole,
// so a check never sees part of a list. The slice is new on each call.
func (u User) Strings(name string) []string {
	switch v := u.Attrs[name].(type) {
	case []string:
		if len(v) == 0 {
			return nil
		}
		return append([]string(nil), v...)
	case []any:
		if len(v) == 0 {
			return nil
		}
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out[i] = s
		}
		return out
	}
	return nil
}

// Int64s returns the named claim if it is a list of integers, each read as [User.Int64]
// reads one ([]any from JSON, []int64 or []int), else nil. A list with one element that
// does not convert gives nil as a whole. The slice is new on each call.
func (u User) Int64s(name string) []int64 {
	switch v := u.Attrs[name].(type) {
	case []int64:
		if len(v) == 0 {
			return nil
		}
		return append([]int64(nil), v...)
	case []int:
		if len(v) == 0 {
			return nil
		}
		out := make([]int64, len(v))
		for i, e := range v {
			out[i] = int64(e)
		}
		return out
	case []any:
		if len(v) == 0 {
			return nil
		}
		out := make([]int64, len(v))
		for i, e := range v {
			n, ok := toInt64(e)
			if !ok {
				return nil
			}
			out[i] = n
		}
		return out
	}
	return nil
}

// maxExactFloat is 2^53: from there on float64 skips integers, so a decoded
// 9007199254740992 may have been 9007199254740993.
const maxExactFloat = 1 << 53

// toInt64 converts one claim value to an integer, exactly or not at all.
func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		return parseDecimal(string(n))
	case string:
		return parseDecimal(n)
	case float64:
		if n != math.Trunc(n) || n >= maxExactFloat || n <= -maxExactFloat {
			return 0, false
		}
		return int64(n), true
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		if n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

// parseDecimal reads '-'? digits, as JSON writes an integer (strconv.ParseInt alone
// also takes "+42" and "0x2a" with base 0; base 10 keeps only the former out).
func parseDecimal(s string) (int64, bool) {
	d := s
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if d == "" {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
