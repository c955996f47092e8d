package expr

import (
	"errors"
	"fmt"
	"strings"
)

// ErrValue is wrapped by Expand's errors: a name had no usable value, or the
// expansion is too large.
var ErrValue = errors.New("expr: no value")

// Template is a parsed group-name template. It is immutable and safe for concurrent use.
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit  string
	path []string // nil for a literal
	name string   // as written, for errors
}

// ParseTemplate parses s, checking its names against names.
func ParseTemplate(s string, names Names) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{', c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%w: unclosed { at byte %d", ErrSyntax, i)
			}
			name := strings.TrimSpace(s[i+1 : i+end])
			path, err := names.resolve(name)
			if err != nil {
				return nil, err
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, part{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, part{path: path, name: name})
			i += end
		case c == '}':
			return nil, fmt.Errorf("%w: } without { at byte %d (write }} for a brace)", ErrSyntax, i)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{lit: lit.String()})
	}
	return t, nil
}

// String returns the template as written.
func (t *Template) String() string { return t.src }

// Expand returns the names t makes from v: one, or one per combination of items when
// names hold lists. It fails (ErrValue) when a name has no printable value or the
// result would exceed max names; the error names the missing value, never its
// content.
func (t *Template) Expand(v Vars, max int) ([]string, error) {
	out := []string{""}
	for _, p := range t.parts {
		if p.path == nil {
			for i := range out {
				out[i] += p.lit
			}
			continue
		}
		val, ok := v.Lookup(p.path)
		if !ok {
			return nil, fmt.Errorf("%w: {%s} is missing", ErrValue, p.name)
		}
		items, isList := val.([]any)
		if !isList {
			items = []any{val}
		}
		if len(items) == 0 {
			return nil, nil // an empty list: no group at all
		}
		if len(out)*len(items) > max {
			return nil, fmt.Errorf("%w: {%s} makes more than %d names", ErrValue, p.name, max)
		}
		texts := make([]string, len(items))
		for i, it := range items {
			s, _, ok := text(it)
			if !ok {
				return nil, fmt.Errorf("%w: {%s} is not text, a number or a boolean", ErrValue, p.name)
			}
			texts[i] = s
		}
		next := make([]string, 0, len(out)*len(texts))
		for _, o := range out {
			for _, s := range texts {
				next = append(next, o+s)
			}
		}
		out = next
	}
	return out, nil
}

// Literal reports whether t has no names: it always expands to itself.
func (t *Template) Literal() bool {
	for _, p := range t.parts {
		if p.path != nil {
			return false
		}
	}
	return true
}
