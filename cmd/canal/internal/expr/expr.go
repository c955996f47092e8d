package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/canal-rt/canal"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("expr: syntax error")

// Vars resolves names to values when a template or predicate runs.
type Vars interface {
	// Lookup returns the value at path (["user", "id"], ["route", "room"], or a
	// bus message's field path), and whether there is one.
	Lookup(path []string) (any, bool)
}

// Names says which names a template or predicate may use, checked when it is parsed.
type Names struct {
	// Fields makes every name a field path of a JSON object (bus templates).
	Fields bool
	// Route is the set of values the route pattern captures; a name outside it is an
	// error. Ignored with Fields.
	Route []string
}

// resolve checks a dotted name and returns its full path (a bare route name gets
// its "route." prefix).
func (n Names) resolve(name string) ([]string, error) {
	path := strings.Split(name, ".")
	for _, p := range path {
		if !identifier(p) {
			return nil, fmt.Errorf("%w: %q is not a name (letters, digits and _ between dots)", ErrSyntax, name)
		}
	}
	if n.Fields {
		return path, nil
	}
	switch path[0] {
	case "user":
		switch {
		case len(path) == 1:
			return nil, fmt.Errorf("%w: %q names the whole user: use user.id, user.username, user.authenticated or user.<claim>", ErrSyntax, name)
		case (path[1] == "id" || path[1] == "username" || path[1] == "authenticated") && len(path) > 2:
			return nil, fmt.Errorf("%w: %q: user.%s has no fields", ErrSyntax, name, path[1])
		}
		return path, nil
	case "route":
		if len(path) != 2 {
			return nil, fmt.Errorf("%w: %q: route values are route.<name>", ErrSyntax, name)
		}
	default:
		if len(path) != 1 {
			return nil, fmt.Errorf("%w: %q: names start with user. or route. (or are a route value)", ErrSyntax, name)
		}
		path = []string{"route", path[0]}
	}
	if !slices.Contains(n.Route, path[1]) {
		if len(n.Route) == 0 {
			return nil, fmt.Errorf("%w: {%s}: the route pattern captures no values", ErrSyntax, path[1])
		}
		return nil, fmt.Errorf("%w: {%s}: the route pattern captures only %s", ErrSyntax, path[1], strings.Join(n.Route, ", "))
	}
	return path, nil
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Conn is the Vars of a connection: its user and its route values.
type Conn struct {
	User  canal.User
	Route canal.Args
}

// Lookup implements Vars.
func (c Conn) Lookup(path []string) (any, bool) {
	switch path[0] {
	case "route":
		v, ok := c.Route[path[1]]
		return v, ok
	case "user":
		switch path[1] {
		case "id":
			return c.User.ID, true
		case "username":
			return c.User.Username, true
		case "authenticated":
			return c.User.Authenticated(), true
		}
		return walk(c.User.Attrs, path[1:])
	}
	return nil, false
}

// Fields is the Vars of a JSON object (a bus message), decoded with UseNumber.
type Fields map[string]any

// Lookup implements Vars.
func (f Fields) Lookup(path []string) (any, bool) { return walk(f, path) }

func walk(m map[string]any, path []string) (any, bool) {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

// text is a value as templates print it and comparisons see it: ok is false for
// values that have no text (nil, maps, lists, fractions in templates).
func text(v any) (s string, isBool, ok bool) {
	switch v := v.(type) {
	case string:
		return v, false, true
	case bool:
		return strconv.FormatBool(v), true, true
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return strconv.FormatInt(n, 10), false, true
		}
		if f, err := v.Float64(); err == nil {
			return floatText(f)
		}
		return "", false, false
	case float64:
		return floatText(v)
	case int:
		return strconv.Itoa(v), false, true
	case int64:
		return strconv.FormatInt(v, 10), false, true
	case uint64:
		return strconv.FormatUint(v, 10), false, true
	}
	return "", false, false
}

func floatText(f float64) (string, bool, bool) {
	if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
		return strconv.FormatInt(int64(f), 10), false, true
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", false, false
	}
	return strconv.FormatFloat(f, 'g', -1, 64), false, true
}

func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	if s, _, ok := text(v); ok {
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && f != 0
	}
	return false
}

func equal(a, b any) bool {
	sa, ba, oka := text(a)
	sb, bb, okb := text(b)
	return oka && okb && ba == bb && sa == sb
}
