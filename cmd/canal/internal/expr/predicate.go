package expr

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Predicate is a parsed predicate. It is immutable and safe for concurrent use.
type Predicate struct {
	src         string
	not         bool
	left, right operand
	op          string // "", "==", "!=", "contains"
}

type operand struct {
	path []string
	lit  any
}

func (o operand) value(v Vars) (any, bool) {
	if o.path == nil {
		return o.lit, true
	}
	return v.Lookup(o.path)
}

// ParsePredicate parses s, checking its names against names.
func ParsePredicate(s string, names Names) (*Predicate, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &Predicate{src: s}
	if len(toks) > 0 && toks[0] == "not" {
		p.not = true
		toks = toks[1:]
	}
	switch {
	case len(toks) == 1:
		if p.left, err = parseOperand(toks[0], names); err != nil {
			return nil, err
		}
		if p.left.path == nil {
			return nil, fmt.Errorf("%w: %q: a predicate alone must be a name, not a literal", ErrSyntax, s)
		}
		return p, nil
	case len(toks) == 3:
		if p.not {
			return nil, fmt.Errorf("%w: %q: not applies to a name alone (use != to negate a comparison)", ErrSyntax, s)
		}
		switch toks[1] {
		case "==", "!=", "contains":
			p.op = toks[1]
		default:
			return nil, fmt.Errorf("%w: %q: unknown operator %q (==, != or contains)", ErrSyntax, s, toks[1])
		}
		if p.left, err = parseOperand(toks[0], names); err != nil {
			return nil, err
		}
		if p.right, err = parseOperand(toks[2], names); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, fmt.Errorf("%w: %q: expected NAME, not NAME, or A == B, A != B, A contains B", ErrSyntax, s)
}

// String returns the predicate as written.
func (p *Predicate) String() string { return p.src }

// Eval reports whether the predicate holds for v. A missing name is false for
// NAME, ==, and contains, and true for not NAME and !=.
func (p *Predicate) Eval(v Vars) bool {
	l, lok := p.left.value(v)
	switch p.op {
	case "":
		return (lok && truthy(l)) != p.not
	case "==", "!=":
		r, rok := p.right.value(v)
		eq := lok && rok && equal(l, r)
		return eq == (p.op == "==")
	case "contains":
		r, rok := p.right.value(v)
		list, ok := l.([]any)
		if !lok || !rok || !ok {
			return false
		}
		for _, it := range list {
			if equal(it, r) {
				return true
			}
		}
	}
	return false
}

func parseOperand(tok string, names Names) (operand, error) {
	switch {
	case tok == "true" || tok == "false":
		return operand{lit: tok == "true"}, nil
	case tok[0] == '"':
		s, err := strconv.Unquote(tok)
		if err != nil {
			return operand{}, fmt.Errorf("%w: bad string %s", ErrSyntax, tok)
		}
		return operand{lit: s}, nil
	case tok[0] == '-' || '0' <= tok[0] && tok[0] <= '9':
		if _, err := strconv.ParseFloat(tok, 64); err != nil {
			return operand{}, fmt.Errorf("%w: bad number %s", ErrSyntax, tok)
		}
		return operand{lit: json.Number(tok)}, nil
	}
	path, err := names.resolve(tok)
	if err != nil {
		return operand{}, err
	}
	return operand{path: path}, nil
}

// tokenize splits on spaces, keeping double-quoted strings (Go escapes) whole.
func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("%w: %q: unterminated string", ErrSyntax, s)
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		default:
			j := strings.IndexAny(s[i:], " \t\"")
			if j < 0 {
				j = len(s) - i
			}
			toks = append(toks, s[i:i+j])
			i += j
		}
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%w: empty predicate", ErrSyntax)
	}
	return toks, nil
}
