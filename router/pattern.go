package router

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/canal-rt/canal"
)

// conv is a Django path converter.
type conv uint8

const (
	convStr conv = iota
	convInt
	convSlug
	convUUID
	convPath
	convRaw // a regex group, kept as the matched text
	numConv
)

var convNames = map[string]conv{
	"str":  convStr,
	"int":  convInt,
	"slug": convSlug,
	"uuid": convUUID,
	"path": convPath,
}

// convRegexps are Django's converter expressions, used when a pattern needs the
// regexp matcher. In Go as in Python, '.' excludes '\n' and [^/] includes it.
var convRegexps = [...]string{
	convStr:  `[^/]+`,
	convInt:  `[0-9]+`,
	convSlug: `[-a-zA-Z0-9_]+`,
	convUUID: `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`,
	convPath: `.+`,
}

// classes[c][b] reports whether converter c accepts byte b. UUIDs are checked by
// isUUID instead. Non-ASCII bytes count for str and path, which accept any character.
var classes = func() (t [numConv][256]bool) {
	for b := 0; b < 256; b++ {
		t[convStr][b] = b != '/'
		t[convInt][b] = '0' <= b && b <= '9'
		t[convSlug][b] = '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || b == '-' || b == '_'
		t[convPath][b] = b != '\n'
	}
	return t
}()

// part is a literal (name == "") or a capture of a path pattern.
type part struct {
	lit  string
	name string
	conv conv
}

// group describes a regexp submatch: a capture name ("" to ignore it) and its converter.
type group struct {
	name string
	conv conv
}

// route is a compiled Route. It matches with parts when greedy matching can never
// need to back off (the common case), else with re.
type route struct {
	sub      *Router // set when the handler is a *Router: the pattern is then a prefix
	base     int     // index of the route's first leaf in the router's leaves
	endpoint bool

	parts []part

	re     *regexp.Regexp
	prefix string  // literal text every match of re starts with
	groups []group // by submatch index
}

func compile(rt Route) (route, error) {
	fail := func(reason string, err error) (route, error) {
		return route{}, &PatternError{Pattern: rt.pattern, Reason: reason, Err: err}
	}
	c := route{endpoint: true}
	switch h := rt.h.(type) {
	case nil:
		return fail("nil handler", nil)
	case canal.HandlerFunc:
		if h == nil {
			return fail("nil handler", nil)
		}
	case *Router:
		if h == nil {
			return fail("nil handler", nil)
		}
		c.sub, c.endpoint = h, false
	}
	var reason string
	var err error
	if rt.regex {
		reason, err = c.compileRegex(rt.pattern)
	} else {
		reason = c.compilePath(rt.pattern)
	}
	if reason != "" {
		return fail(reason, err)
	}
	return c, nil
}

func (c *route) compileRegex(pattern string) (string, error) {
	// Compiled alone first: a pattern that compiles has balanced parentheses, so the
	// anchoring wrapper below cannot change its meaning.
	alone, err := regexp.Compile(pattern)
	if err != nil {
		return "bad regexp", err
	}
	c.prefix, _ = alone.LiteralPrefix()
	if strings.HasPrefix(c.prefix, "/") {
		return "pattern starts with '/' but leading slashes are stripped from the path, so it can never match", nil
	}
	c.groups = make([]group, alone.NumSubexp()+1)
	seen := make(map[string]bool)
	for i, name := range alone.SubexpNames() {
		if name == "" {
			continue
		}
		if seen[name] {
			return "duplicate capture name " + strconv.Quote(name), nil
		}
		seen[name] = true
		c.groups[i] = group{name: name, conv: convRaw}
	}
	anchored := `^(?:` + pattern + `)`
	if c.endpoint {
		anchored += `\z`
	}
	c.re, err = regexp.Compile(anchored)
	if err != nil { // not expected after the check above
		return "bad regexp", err
	}
	return "", nil
}

func (c *route) compilePath(pattern string) string {
	if strings.HasPrefix(pattern, "/") {
		return "pattern starts with '/' but leading slashes are stripped from the path, so it can never match"
	}
	// Django warns about these (urls.W001/2_0.W001); here they would silently never match.
	if strings.HasPrefix(pattern, "^") || strings.HasSuffix(pattern, "$") || strings.Contains(pattern, "(?P<") {
		return "pattern looks like a regular expression: use router.Regex"
	}
	var parts []part
	seen := make(map[string]bool)
	for s := pattern; s != ""; {
		i := strings.IndexAny(s, "<>")
		if i < 0 {
			parts = append(parts, part{lit: s})
			break
		}
		if s[i] == '>' {
			return "unbalanced '>'"
		}
		if i > 0 {
			parts = append(parts, part{lit: s[:i]})
		}
		s = s[i+1:]
		j := strings.IndexAny(s, "<>")
		if j < 0 || s[j] == '<' {
			return "unbalanced '<'"
		}
		spec := s[:j]
		s = s[j+1:]
		p, reason := parseCapture(spec)
		if reason != "" {
			return reason
		}
		if seen[p.name] {
			return "duplicate capture name " + strconv.Quote(p.name)
		}
		seen[p.name] = true
		parts = append(parts, p)
	}
	if c.deterministic(parts) {
		c.parts = parts
		return ""
	}
	// Backing off is needed (e.g. "<str:a>-<str:b>"): let RE2 do it, in linear time,
	// with the same result as Python's backtracking.
	c.buildRegexp(parts)
	return ""
}

// buildRegexp makes c match parts with a regexp.
func (c *route) buildRegexp(parts []part) {
	var b strings.Builder
	b.WriteString("^")
	c.groups = []group{{}}
	for _, p := range parts {
		if p.name == "" {
			b.WriteString(regexp.QuoteMeta(p.lit))
			continue
		}
		b.WriteString("(" + convRegexps[p.conv] + ")")
		c.groups = append(c.groups, group{name: p.name, conv: p.conv})
	}
	if c.endpoint {
		b.WriteString(`\z`)
	}
	c.re = regexp.MustCompile(b.String())
	if len(parts) > 0 && parts[0].name == "" {
		c.prefix = parts[0].lit
	}
}

// parseCapture parses the inside of <...>.
func parseCapture(spec string) (part, string) {
	if strings.IndexFunc(spec, unicode.IsSpace) >= 0 {
		return part{}, "whitespace in <" + spec + ">"
	}
	cname, name, ok := strings.Cut(spec, ":")
	if !ok {
		cname, name = "str", spec
	}
	if cname == "" {
		return part{}, "empty converter in <" + spec + ">"
	}
	if name == "" {
		return part{}, "empty capture name in <" + spec + ">"
	}
	if !isIdentifier(name) {
		return part{}, "capture name " + strconv.Quote(name) + " is not an identifier"
	}
	cv, ok := convNames[cname]
	if !ok {
		return part{}, "unknown converter " + strconv.Quote(cname)
	}
	return part{name: name, conv: cv}, ""
}

// isIdentifier approximates Python's str.isidentifier, which Django requires.
func isIdentifier(s string) bool {
	for i, r := range s {
		if r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r) {
			continue
		}
		return false
	}
	return s != ""
}

// deterministic reports whether matching each capture greedily, longest run first, can
// never need to back off. That holds when what follows a capture cannot continue it:
// the end, or a literal starting with a byte the converter rejects. A uuid has a fixed
// length, and a path followed by a final literal of an endpoint is whatever precedes it.
func (c *route) deterministic(parts []part) bool {
	for i, p := range parts {
		if p.name == "" || p.conv == convUUID || i == len(parts)-1 {
			continue
		}
		next := parts[i+1]
		if next.name != "" {
			return false
		}
		if p.conv == convPath {
			if !c.endpoint || i+2 != len(parts) {
				return false
			}
			continue
		}
		if classes[p.conv][next.lit[0]] {
			return false
		}
	}
	return true
}

// match matches the start of s (all of it for an endpoint), appending the captured
// values to caps. It returns the rest of s.
func (c *route) match(s string, caps []capture) (string, []capture, bool) {
	if c.re != nil {
		return c.matchRegexp(s, caps)
	}
	pos := 0
	for i := range c.parts {
		p := &c.parts[i]
		if p.name == "" {
			if !strings.HasPrefix(s[pos:], p.lit) {
				return "", caps, false
			}
			pos += len(p.lit)
			continue
		}
		end := pos
		switch {
		case p.conv == convUUID:
			if !isUUID(s[pos:]) {
				return "", caps, false
			}
			end += 36
		case p.conv == convPath && i+1 < len(c.parts):
			// Only as "<path:p>suffix" at the end of an endpoint: see deterministic.
			suffix := c.parts[i+1].lit
			end = len(s) - len(suffix)
			if end <= pos || !strings.HasSuffix(s, suffix) || strings.IndexByte(s[pos:end], '\n') >= 0 {
				return "", caps, false
			}
		default:
			class := &classes[p.conv]
			for end < len(s) && class[s[end]] {
				end++
			}
			if end == pos {
				return "", caps, false
			}
		}
		cp, ok := convert(p.name, p.conv, s[pos:end])
		if !ok {
			return "", caps, false
		}
		caps = append(caps, cp)
		pos = end
	}
	if c.endpoint && pos != len(s) {
		return "", caps, false
	}
	return s[pos:], caps, true
}

func (c *route) matchRegexp(s string, caps []capture) (string, []capture, bool) {
	if !strings.HasPrefix(s, c.prefix) {
		return "", caps, false
	}
	loc := c.re.FindStringSubmatchIndex(s)
	if loc == nil {
		return "", caps, false
	}
	n := len(caps)
	for i := 1; i < len(c.groups); i++ {
		g := c.groups[i]
		if g.name == "" || loc[2*i] < 0 {
			continue
		}
		cp, ok := convert(g.name, g.conv, s[loc[2*i]:loc[2*i+1]])
		if !ok {
			return "", caps[:n], false
		}
		caps = append(caps, cp)
	}
	return s[loc[1]:], caps, true
}

// convert turns matched text into a capture. As in Django, a value the converter
// cannot represent (here an int overflowing Go's int) makes the route not match.
func convert(name string, cv conv, text string) (capture, bool) {
	if cv != convInt {
		return capture{name: name, str: text}, true
	}
	n := 0
	for i := 0; i < len(text); i++ {
		d := int(text[i] - '0')
		if n > (math.MaxInt-d)/10 {
			return capture{}, false
		}
		n = n*10 + d
	}
	return capture{name: name, n: n, isInt: true}, true
}

// isUUID reports whether s starts with a lowercase canonical UUID, as Django's uuid
// converter requires.
func isUUID(s string) bool {
	if len(s) < 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		b := s[i]
		switch i {
		case 8, 13, 18, 23:
			if b != '-' {
				return false
			}
		default:
			if !('0' <= b && b <= '9' || 'a' <= b && b <= 'f') {
				return false
			}
		}
	}
	return true
}
