package router

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp/syntax"
	"strings"
	"sync"
	"testing"

	"github.com/canal-rt/canal"
)

// stub is a handler and the session it returns, so a test can see which route won.
type stub struct{ name string }

func (h *stub) Connect(context.Context, canal.Conn) (canal.Session, error) { return h, nil }
func (h *stub) Receive(context.Context, canal.Conn, canal.Frame) error     { return nil }
func (h *stub) Event(context.Context, canal.Conn, canal.Message) error     { return nil }
func (h *stub) Disconnect(context.Context, canal.Conn, int)                {}

func h(name string) *stub { return &stub{name: name} }

// fakeConn is the narrow part of a connection a router uses: its scope.
type fakeConn struct{ scope *canal.Scope }

func (c *fakeConn) Scope() *canal.Scope              { return c.scope }
func (c *fakeConn) Accept(canal.AcceptOptions) error { return nil }
func (c *fakeConn) Accepted() bool                   { return false }
func (c *fakeConn) Send(canal.Frame) error           { return canal.ErrNotAccepted }
func (c *fakeConn) Close(int, string) error          { return nil }
func (c *fakeConn) Deliver(canal.Message) bool       { return false }
func (c *fakeConn) Context() context.Context         { return context.Background() }

// conn returns a connection whose scope has the given (percent-decoded) path.
func conn(path string) *fakeConn {
	return &fakeConn{scope: &canal.Scope{Type: "websocket", Path: path}}
}

func nameOf(hd canal.Handler) string { return hd.(*stub).name }

// args builds Args from name, value pairs.
func args(kv ...any) canal.Args {
	a := canal.Args{}
	for i := 0; i < len(kv); i += 2 {
		a[kv[i].(string)] = kv[i+1]
	}
	return a
}

type matchCase struct {
	path    string
	want    string // handler name; "" for no match
	args    canal.Args
	pattern string
}

func checkMatches(t *testing.T, r *Router, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		hd, got, pattern, ok := r.Match(tc.path)
		if tc.want == "" {
			if ok {
				t.Errorf("Match(%q) = %s %v, want no match", tc.path, nameOf(hd), got)
			}
			continue
		}
		if !ok {
			t.Errorf("Match(%q): no match, want %s", tc.path, tc.want)
			continue
		}
		if nameOf(hd) != tc.want {
			t.Errorf("Match(%q) handler = %s, want %s", tc.path, nameOf(hd), tc.want)
		}
		if !reflect.DeepEqual(got, tc.args) {
			t.Errorf("Match(%q) args = %#v, want %#v", tc.path, got, tc.args)
		}
		if tc.pattern != "" && pattern != tc.pattern {
			t.Errorf("Match(%q) pattern = %q, want %q", tc.path, pattern, tc.pattern)
		}
	}
}

const (
	uuidLower = "075194d3-6885-417e-a8a8-6c931e272f00"
	uuidUpper = "075194D3-6885-417E-A8A8-6C931E272F00"
)

func TestConverters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		cases   []matchCase
	}{
		{"str", "ws/chat/<str:room>/", []matchCase{
			{path: "/ws/chat/lobby/", want: "h", args: args("room", "lobby")},
			{path: "/ws/chat/a.b-c~d/", want: "h", args: args("room", "a.b-c~d")},
			{path: "/ws/chat/café/", want: "h", args: args("room", "café")}, // percent-decoded by the server
			{path: "/ws/chat/日本語/", want: "h", args: args("room", "日本語")},
			{path: "/ws/chat/a\nb/", want: "h", args: args("room", "a\nb")}, // like Python's [^/]
			{path: "/ws/chat//"},
			{path: "/ws/chat/a/b/"},
			{path: "/ws/chat/lobby"},
		}},
		{"default is str", "ws/chat/<room>/", []matchCase{
			{path: "/ws/chat/lobby/", want: "h", args: args("room", "lobby")},
			{path: "/ws/chat/a/b/"},
		}},
		{"int", "item/<int:id>/", []matchCase{
			{path: "/item/42/", want: "h", args: args("id", 42)},
			{path: "/item/007/", want: "h", args: args("id", 7)},
			{path: "/item/0/", want: "h", args: args("id", 0)},
			{path: "/item/9223372036854775807/", want: "h", args: args("id", 9223372036854775807)},
			{path: "/item/9223372036854775808/"}, // overflows int: no match
			{path: "/item/99999999999999999999999/"},
			{path: "/item/-1/"},
			{path: "/item/+1/"},
			{path: "/item/12a/"},
			{path: "/item/١٢/"}, // Arabic-Indic digits: Django's [0-9] rejects them too
			{path: "/item//"},
		}},
		{"slug", "post/<slug:s>/", []matchCase{
			{path: "/post/hello-world_2/", want: "h", args: args("s", "hello-world_2")},
			{path: "/post/-/", want: "h", args: args("s", "-")},
			{path: "/post/café/"},
			{path: "/post/a.b/"},
			{path: "/post/a b/"},
			{path: "/post//"},
		}},
		{"uuid", "obj/<uuid:id>/", []matchCase{
			{path: "/obj/" + uuidLower + "/", want: "h", args: args("id", uuidLower)},
			{path: "/obj/" + uuidUpper + "/"}, // Django's converter takes lowercase only
			{path: "/obj/" + strings.ReplaceAll(uuidLower, "-", "") + "/"},
			{path: "/obj/" + uuidLower[:35] + "/"},
			{path: "/obj/" + uuidLower + "0/"},
			{path: "/obj/075194d3-6885-417e-a8a8-6c931e272f0g/"},
			{path: "/obj/{" + uuidLower + "}/"},
		}},
		{"uuid then capture", "obj/<uuid:id><int:n>", []matchCase{
			{path: "/obj/" + uuidLower + "12", want: "h", args: args("id", uuidLower, "n", 12)},
			{path: "/obj/" + uuidLower},
		}},
		{"path", "files/<path:p>", []matchCase{
			{path: "/files/a/b/c.txt", want: "h", args: args("p", "a/b/c.txt")},
			{path: "/files/x", want: "h", args: args("p", "x")},
			{path: "/files//", want: "h", args: args("p", "/")},
			{path: "/files/dossier/été/", want: "h", args: args("p", "dossier/été/")},
			{path: "/files/"},
			{path: "/files/a\nb"}, // '.' does not match a newline in Python either
		}},
		{"path then suffix", "dl/<path:p>/raw", []matchCase{
			{path: "/dl/a/b/raw", want: "h", args: args("p", "a/b")},
			{path: "/dl/raw/raw", want: "h", args: args("p", "raw")},
			{path: "/dl/a/raw/raw", want: "h", args: args("p", "a/raw")},
			{path: "/dl//raw"},
			{path: "/dl/raw"},
			{path: "/dl/a/b/raw/"},
		}},
		// These need backing off, as Python's regexps do: the last '-' splits.
		{"str-str backs off", "<str:a>-<str:b>/", []matchCase{
			{path: "/x-y/", want: "h", args: args("a", "x", "b", "y")},
			{path: "/x-y-z/", want: "h", args: args("a", "x-y", "b", "z")},
			{path: "/x-/"},
			{path: "/xy/"},
		}},
		{"slug-int backs off", "<slug:s>-<int:n>/", []matchCase{
			{path: "/my-post-42/", want: "h", args: args("s", "my-post", "n", 42)},
			{path: "/my-post-99999999999999999999/"},
			{path: "/my-post/"},
		}},
		{"path then capture", "<path:dir>/<str:file>", []matchCase{
			{path: "/a/b/c.txt", want: "h", args: args("dir", "a/b", "file", "c.txt")},
			{path: "/c.txt"},
		}},
		{"regex metacharacters are literal", "v1.0/(x)+/<int:n>", []matchCase{
			{path: "/v1.0/(x)+/3", want: "h", args: args("n", 3)},
			{path: "/v1x0/(x)+/3"},
			{path: "/v1.0/xx/3"},
		}},
		{"unicode literal", "café/<str:x>/", []matchCase{
			{path: "/café/1/", want: "h", args: args("x", "1")},
			{path: "/cafe/1/"},
		}},
		{"unicode name", "ws/<str:salle_é>/", []matchCase{
			{path: "/ws/1/", want: "h", args: args("salle_é", "1")},
		}},
		{"no captures", "ws/echo/", []matchCase{
			{path: "/ws/echo/", want: "h", args: nil},
			{path: "/ws/echo/x"},
		}},
		{"empty pattern", "", []matchCase{
			{path: "/", want: "h", args: nil},
			{path: "", want: "h", args: nil},
			{path: "///", want: "h", args: nil},
			{path: "/x"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := New(Path(tt.pattern, h("h")))
			if err != nil {
				t.Fatal(err)
			}
			checkMatches(t, r, tt.cases)
		})
	}
}

// The hand-written matcher and the regexp one must agree wherever both apply.
func TestMatchersAgree(t *testing.T) {
	t.Parallel()
	patterns := []string{
		"ws/chat/<str:room>/", "item/<int:id>/", "post/<slug:s>/", "obj/<uuid:id>/", "obj/<uuid:id><str:s>",
		"files/<path:p>", "dl/<path:p>/raw", "a/<int:x>.<slug:y>", "<str:a>", "<int:n>", "",
	}
	paths := []string{
		"ws/chat/lobby/", "ws/chat//", "ws/chat/a/b/", "item/42/", "item/x/", "item/99999999999999999999/",
		"post/a-b/", "post/a.b/", "obj/" + uuidLower + "/", "obj/" + uuidUpper + "/", "obj/" + uuidLower + "x",
		"files/a/b", "files/", "files/a\nb", "dl/a/b/raw", "dl/raw", "dl/a\n/raw", "a/12.x-y", "a/12.",
		"a/.x", "x", "x/y", "12", "12/", "", "caf\xc3/\xff/",
	}
	for _, p := range patterns {
		for _, endpoint := range []bool{true, false} {
			fast := route{endpoint: endpoint}
			reason := fast.compilePath(p)
			if p == "dl/<path:p>/raw" && !endpoint && fast.re != nil {
				continue // a path capture before a literal of a prefix needs backing off
			}
			if reason != "" || fast.re != nil {
				t.Fatalf("%q endpoint=%v: not compiled to parts (%s)", p, endpoint, reason)
			}
			slow := route{endpoint: endpoint}
			slow.buildRegexp(fast.parts)
			for _, s := range paths {
				r1, c1, ok1 := fast.match(s, nil)
				r2, c2, ok2 := slow.match(s, nil)
				if ok1 != ok2 || ok1 && (r1 != r2 || !reflect.DeepEqual(c1, c2)) {
					t.Errorf("pattern %q endpoint=%v path %q: parts (%q %v %v) != regexp (%q %v %v)",
						p, endpoint, s, r1, c1, ok1, r2, c2, ok2)
				}
			}
		}
	}
}

func TestRegex(t *testing.T) {
	t.Parallel()
	r := Must(
		Regex(`^ws/chat/(?P<room>\w+)/$`, h("chat")),
		Regex(`ws/tutorial/(?P<room_name>\w+)/$`, h("tutorial")), // Channels' tutorial form, no '^'
		Regex(`^(ws|wss)/item/(?P<id>[0-9]+)/$`, h("item")),
		Regex(`^opt/(?:x(?P<n>[0-9]+))?(?P<tail>[a-z]*)$`, h("opt")),
		Regex(`^(?<short>[a-z]+)\.json$`, h("short")),
		Regex(`(?i)^upper/(?P<v>[a-z]+)$`, h("upper")),
		Regex(`a|ab`, h("alt")),
		Regex(`^u/(?P<w>[\p{L}\p{N}_]+)/$`, h("unicode")),
	)
	checkMatches(t, r, []matchCase{
		{path: "/ws/chat/lobby/", want: "chat", args: args("room", "lobby"), pattern: `^ws/chat/(?P<room>\w+)/$`},
		{path: "/ws/chat/café/"}, // Go's \w is ASCII
		{path: "/ws/chat/lobby/x"},
		{path: "/ws/tutorial/lobby/", want: "tutorial", args: args("room_name", "lobby")},
		{path: "/x/ws/tutorial/lobby/"},                              // anchored at the start, unlike Django's search()
		{path: "/ws/item/12/", want: "item", args: args("id", "12")}, // a string: no converters in regexps
		{path: "/wss/item/12/", want: "item", args: args("id", "12")},
		{path: "/opt/", want: "opt", args: args("tail", "")},
		{path: "/opt/x5abc", want: "opt", args: args("n", "5", "tail", "abc")},
		{path: "/opt/abc", want: "opt", args: args("tail", "abc")},
		{path: "/index.json", want: "short", args: args("short", "index")},
		{path: "/UPPER/ABC", want: "upper", args: args("v", "ABC")},
		{path: "/ab", want: "alt", args: nil}, // whole-path anchoring beats leftmost-first "a"
		{path: "/u/café/", want: "unicode", args: args("w", "café")},
	})
}

func TestOrderAndSlashes(t *testing.T) {
	t.Parallel()
	r := Must(
		Path("ws/echo/", h("echo")),
		Path("ws/<str:name>/", h("named")),
		Path("ws/<str:other>/", h("never")),
		Path("n/<int:id>/", h("int")),
		Path("n/<str:id>/", h("str")),
		Path("bare", h("bare")),
	)
	checkMatches(t, r, []matchCase{
		{path: "/ws/echo/", want: "echo", args: nil, pattern: "ws/echo/"},
		{path: "ws/echo/", want: "echo", args: nil},
		{path: "//ws/echo/", want: "echo", args: nil},
		{path: "/ws/echo", want: "", args: nil}, // no trailing-slash redirect
		{path: "/ws/echo//"},
		{path: "/ws//echo/"},
		{path: "/ws/lobby/", want: "named", args: args("name", "lobby"), pattern: "ws/<str:name>/"},
		{path: "/n/42/", want: "int", args: args("id", 42)},
		{path: "/n/x/", want: "str", args: args("id", "x")},
		{path: "/n/99999999999999999999/", want: "str", args: args("id", "99999999999999999999")},
		{path: "/bare", want: "bare"},
		{path: "/bare/"},
		{path: "/nothing"},
	})
}

func TestNested(t *testing.T) {
	t.Parallel()
	chat := Must(
		Path("chat/<str:room>/", h("chat")),
		Path("echo/", h("echo")),
	)
	tenant := Must(
		Path("room/<int:room>/", h("tenant-room")),
		Path("<int:id>/", h("tenant-id")),
	)
	deep := Must(Path("b/", Must(Path("c/<str:z>", h("deep")))))
	r := Must(
		Path("ws/", chat),
		Path("t/<slug:tenant>/", tenant),
		Path("id/<str:id>/", tenant), // inner <int:id> wins over outer <str:id>
		Path("ws/<str:x>/", Must(Path("a/", h("a")))),
		Path("ws/<str:y>/b/", h("fallthrough")), // reached when the inner router misses
		Path("slash", chat),                     // remainder "/chat/..." loses its leading slash
		Regex(`^re/(?P<ver>v[0-9]+)/`, chat),
		Path("a/", deep),
		Path("files/<path:dir>/in/", Must(Path("<str:f>", h("file")))), // a prefix that backs off
		Path("", Must(Path("root/<str:r>", h("root")))),
	)
	checkMatches(t, r, []matchCase{
		{path: "/ws/chat/lobby/", want: "chat", args: args("room", "lobby"), pattern: "ws/chat/<str:room>/"},
		{path: "/ws/echo/", want: "echo", args: nil, pattern: "ws/echo/"},
		{path: "/ws//echo/", want: "echo", args: nil}, // every level strips leading slashes
		{path: "/t/acme/room/7/", want: "tenant-room", args: args("tenant", "acme", "room", 7),
			pattern: "t/<slug:tenant>/room/<int:room>/"},
		{path: "/t/acme/7/", want: "tenant-id", args: args("tenant", "acme", "id", 7)},
		{path: "/id/x/5/", want: "tenant-id", args: args("id", 5)},
		{path: "/ws/k/a/", want: "a", args: args("x", "k"), pattern: "ws/<str:x>/a/"},
		// "ws/" matches, chat misses; "ws/<str:x>/" matches, its router misses: the
		// captures of both dead ends must not leak.
		{path: "/ws/k/b/", want: "fallthrough", args: args("y", "k"), pattern: "ws/<str:y>/b/"},
		{path: "/slash/chat/x/", want: "chat", args: args("room", "x"), pattern: "slashchat/<str:room>/"},
		{path: "/slashchat/x/", want: "chat", args: args("room", "x")},
		{path: "/re/v2/echo/", want: "echo", args: args("ver", "v2"), pattern: `^re/(?P<ver>v[0-9]+)/echo/`},
		{path: "/a/b/c/q", want: "deep", args: args("z", "q"), pattern: "a/b/c/<str:z>"},
		{path: "/root/1", want: "root", args: args("r", "1"), pattern: "root/<str:r>"},
		{path: "/files/a/b/in/c", want: "file", args: args("dir", "a/b", "f", "c"), pattern: "files/<path:dir>/in/<str:f>"},
		{path: "/files/a/in/b/in/c", want: "file", args: args("dir", "a/in/b", "f", "c")}, // greedy, as in Django
		{path: "/ws/chat/lobby/extra"},
		{path: "/t/acme/"},
		{path: "/a/b/"},
	})
}

func TestConnect(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("refused by handler")
	inner := Must(Path("chat/<str:room>/", h("chat")), Path("echo/", h("echo")))
	r := Must(
		Path("ws/t/<int:tenant>/", inner),
		Path("ws/", inner),
		Path("err/", canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
			return nil, sentinel
		})),
	)
	tests := []struct {
		name        string
		path        string
		route       canal.Args // Scope.Route before
		pattern     string     // Scope.RoutePattern before
		want        string
		wantRoute   canal.Args
		wantPattern string
	}{
		{name: "captures", path: "/ws/chat/lobby/", want: "chat",
			wantRoute: args("room", "lobby"), wantPattern: "ws/chat/<str:room>/"},
		{name: "nested merge", path: "/ws/t/3/chat/café/", want: "chat",
			wantRoute: args("tenant", 3, "room", "café"), wantPattern: "ws/t/<int:tenant>/chat/<str:room>/"},
		{name: "no captures leaves Route nil", path: "/ws/echo/", want: "echo",
			wantRoute: nil, wantPattern: "ws/echo/"},
		{name: "merges into existing args", path: "/ws/chat/lobby/", route: args("room", "old", "keep", true),
			pattern: "api/", want: "chat", wantRoute: args("room", "lobby", "keep", true),
			wantPattern: "api/ws/chat/<str:room>/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := conn(tt.path)
			c.scope.Route, c.scope.RoutePattern, c.scope.RawQuery = tt.route, tt.pattern, "token=secret"
			sess, err := r.Connect(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if got := sess.(*stub).name; got != tt.want {
				t.Errorf("session %s, want %s", got, tt.want)
			}
			if !reflect.DeepEqual(c.scope.Route, tt.wantRoute) {
				t.Errorf("Route = %#v, want %#v", c.scope.Route, tt.wantRoute)
			}
			if c.scope.RoutePattern != tt.wantPattern {
				t.Errorf("RoutePattern = %q, want %q", c.scope.RoutePattern, tt.wantPattern)
			}
		})
	}

	t.Run("int is typed", func(t *testing.T) {
		t.Parallel()
		c := conn("/ws/t/12/echo/")
		if _, err := r.Connect(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		if n, ok := c.scope.Route.Int("tenant"); !ok || n != 12 {
			t.Errorf("Route.Int(tenant) = %d, %v", n, ok)
		}
	})

	t.Run("handler error passes through", func(t *testing.T) {
		t.Parallel()
		_, err := r.Connect(context.Background(), conn("/err/"))
		if !errors.Is(err, sentinel) {
			t.Errorf("err = %v, want %v", err, sentinel)
		}
	})

	t.Run("404", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"/nope/secret-token/", "/ws/chat/lobby", "/ws/t/1/nope/", "", "/"} {
			c := conn(p)
			c.scope.RawQuery = "token=hunter2"
			sess, err := r.Connect(context.Background(), c)
			var rej *canal.RejectError
			if sess != nil || !errors.As(err, &rej) || rej.Status != 404 {
				t.Fatalf("Connect(%q) = %v, %v; want a 404 RejectError", p, sess, err)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") ||
				(p != "" && p != "/" && strings.Contains(err.Error(), p)) {
				t.Errorf("error %q leaks the path or query", err)
			}
			if c.scope.Route != nil || c.scope.RoutePattern != "" {
				t.Errorf("Connect(%q) changed the scope on a miss: %v %q", p, c.scope.Route, c.scope.RoutePattern)
			}
		}
	})

	t.Run("zero router", func(t *testing.T) {
		t.Parallel()
		var zero Router
		_, err := zero.Connect(context.Background(), conn("/"))
		var rej *canal.RejectError
		if !errors.As(err, &rej) || rej.Status != 404 {
			t.Errorf("err = %v, want 404", err)
		}
	})
}

func TestConcurrentConnect(t *testing.T) {
	t.Parallel()
	r := Must(Path("ws/", Must(Path("chat/<str:room>/", h("chat")))))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				room := fmt.Sprintf("r%d-%d", g, i)
				c := conn("/ws/chat/" + room + "/")
				if _, err := r.Connect(context.Background(), c); err != nil {
					t.Error(err)
					return
				}
				if got := c.scope.Route.String("room"); got != room {
					t.Errorf("room = %q, want %q", got, room)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	ok := h("ok")
	tests := []struct {
		name  string
		route Route
		want  string // the whole message, or a part of it ending in "…"
	}{
		{"unknown converter", Path("ws/<foo:x>/", ok), `router: route "ws/<foo:x>/": unknown converter "foo"`},
		{"duplicate name", Path("<str:a>/<int:a>/", ok), `router: route "<str:a>/<int:a>/": duplicate capture name "a"`},
		{"unbalanced <", Path("ws/<str:room/", ok), `router: route "ws/<str:room/": unbalanced '<'`},
		{"nested <", Path("ws/<a<b>/", ok), `router: route "ws/<a<b>/": unbalanced '<'`},
		{"unbalanced >", Path("ws/room>/", ok), `router: route "ws/room>/": unbalanced '>'`},
		{"empty name", Path("ws/<str:>/", ok), `router: route "ws/<str:>/": empty capture name in <str:>`},
		{"empty brackets", Path("ws/<>/", ok), `router: route "ws/<>/": empty capture name in <>`},
		{"empty converter", Path("ws/<:x>/", ok), `router: route "ws/<:x>/": empty converter in <:x>`},
		{"not an identifier", Path("ws/<int:1x>/", ok), `router: route "ws/<int:1x>/": capture name "1x" is not an identifier`},
		{"dash in name", Path("ws/<room-id>/", ok), `router: route "ws/<room-id>/": capture name "room-id" is not an identifier`},
		{"whitespace", Path("ws/<int: x>/", ok), `router: route "ws/<int: x>/": whitespace in <int: x>`},
		{"leading slash", Path("/ws/echo/", ok), `router: route "/ws/echo/": pattern starts with '/'…`},
		{"regex in path", Path(`^ws/(?P<room>\w+)/$`, ok), `router: route "^ws/(?P<room>\\w+)/$": pattern looks like a regular expression: use router.Regex`},
		{"bad regexp", Regex(`ws/(?P<room>\w+/`, ok), "router: route \"ws/(?P<room>\\\\w+/\": bad regexp: error parsing regexp: missing closing ): …"},
		{"unbalanced regexp", Regex(`x)|(y`, ok), "router: route \"x)|(y\": bad regexp: …"},
		{"duplicate group", Regex(`(?P<a>x)/(?P<a>y)`, ok), `router: route "(?P<a>x)/(?P<a>y)": duplicate capture name "a"`},
		{"regex leading slash", Regex(`^/ws/`, ok), `router: route "^/ws/": pattern starts with '/'…`},
		{"nil handler", Path("ws/", nil), `router: route "ws/": nil handler`},
		{"nil router", Path("ws/", (*Router)(nil)), `router: route "ws/": nil handler`},
		{"nil func", Path("ws/", canal.HandlerFunc(nil)), `router: route "ws/": nil handler`},
		{"zero route", Route{}, `router: route "": nil handler`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := New(Path("fine/<int:x>/", ok), tt.route)
			if r != nil || err == nil {
				t.Fatalf("New = %v, %v; want an error", r, err)
			}
			if prefix, cut := strings.CutSuffix(tt.want, "…"); cut {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error %q, want it to start with %q", err, prefix)
				}
			} else if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			var pe *PatternError
			if !errors.As(err, &pe) || pe.Pattern != tt.route.Pattern() {
				t.Errorf("error %#v is not a *PatternError for %q", err, tt.route.Pattern())
			}
		})
	}

	t.Run("bad regexp wraps the cause", func(t *testing.T) {
		t.Parallel()
		_, err := New(Regex(`(`, ok))
		var se *syntax.Error
		if !errors.As(err, &se) {
			t.Errorf("error %v does not wrap a *syntax.Error", err)
		}
	})

	t.Run("Must panics", func(t *testing.T) {
		t.Parallel()
		defer func() {
			err, _ := recover().(error)
			var pe *PatternError
			if !errors.As(err, &pe) {
				t.Errorf("recovered %v, want a *PatternError", err)
			}
		}()
		Must(Path("<bad", ok))
	})

	t.Run("valid patterns", func(t *testing.T) {
		t.Parallel()
		_, err := New(
			Path("", ok), Path("ws/", ok), Path("<x>", ok), Path("a/<path:p>/<int:n>/", ok),
			Path("<int:a><int:b>", ok), Path("ws/<str:_private>/", ok),
			Regex(`.*`, ok), Regex(`/?ws`, ok), Regex(`(a)(b)`, ok),
		)
		if err != nil {
			t.Fatal(err)
		}
	})
}

// benchRouter is a 20-route table shaped like a real deployment: a few top-level
// routes, then nested api and ws routers.
func benchRouter() *Router {
	api := Must(
		Path("v1/users/<int:id>/", h("user")),
		Path("v1/orders/<uuid:id>/", h("order")),
		Path("v1/search/", h("search")),
		Path("v1/files/<path:p>", h("files")),
		Path("v1/<slug:kind>/<int:id>/", h("kind")),
		Path("v2/", Must(Path("stream/", h("stream2")))),
	)
	ws := Must(
		Path("echo/", h("echo")),
		Path("notifications/", h("notifications")),
		Path("presence/<int:user>/", h("presence")),
		Path("board/<slug:board>/", h("board")),
		Path("doc/<uuid:doc>/", h("doc")),
		Path("game/<int:game>/<str:player>/", h("game")),
		Path("live/<slug:event>/", h("live")),
		Path("feed/<str:name>/", h("feed")),
		Path("chat/<str:room>/", h("chat")),
		Regex(`^legacy/(?P<room>[a-z]+)/$`, h("legacy")),
	)
	return Must(
		Path("health/", h("health")),
		Path("metrics/", h("metrics")),
		Path("admin/<int:id>/", h("admin")),
		Regex(`^old/(?P<x>[a-z]+)/$`, h("old")),
		Path("api/", api),
		Path("ws/", ws),
	)
}

func BenchmarkMatch(b *testing.B) {
	r := benchRouter()
	if n := len(r.leaves); n != 20 {
		b.Fatalf("%d routes, want 20", n)
	}
	const path = "/ws/chat/lobby/"
	if _, _, p, ok := r.Match(path); !ok || p != "ws/chat/<str:room>/" {
		b.Fatalf("Match(%q) = %q, %v", path, p, ok)
	}
	b.Run("Match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Match(path)
		}
	})
	b.Run("Connect", func(b *testing.B) {
		c := conn(path)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			c.scope.Route, c.scope.RoutePattern = nil, ""
			if _, err := r.Connect(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Connect/no-captures", func(b *testing.B) {
		c := conn("/ws/notifications/")
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			c.scope.Route, c.scope.RoutePattern = nil, ""
			if _, err := r.Connect(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// counter is a middleware that counts the connections it ran.
type counter struct{ n int }

func (c *counter) mw(next canal.Handler) canal.Handler {
	return canal.HandlerFunc(func(ctx context.Context, conn canal.Conn) (canal.Session, error) {
		c.n++
		return next.Connect(ctx, conn)
	})
}

// TestRouterMatches: Matches agrees with Connect on every path, through nested routers
// and chains around routers, and leaves the scope alone.
func TestRouterMatches(t *testing.T) {
	t.Parallel()
	var mw counter
	inner := Must(Path("room/<int:id>/", h("room")))
	r := Must(
		Path("ws/chat/<str:room>/", h("chat")),
		Regex(`^ws/re/(?P<slug>[a-z]+)/$`, h("re")),
		Path("ws/nested/", Must(Path("a/", h("a")), Path("b/<slug:s>/", h("b")))),
		// An endpoint whose handler is a chain around a router: that router sees the
		// whole path, so it must match the whole path too.
		Path("ws/guarded/room/<int:id>/", canal.Chain{mw.mw}.Then(Must(Path("ws/guarded/", inner)))),
		// A chain around a router that can never match this route's path.
		Path("ws/dead/", canal.Chain{mw.mw}.Then(Must(Path("elsewhere/", h("x"))))),
		// A plain handler takes whatever reaches it.
		Path("ws/plain/", canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) { return h("plain"), nil })),
	)
	tests := []struct {
		path string
		want bool
	}{
		{"/ws/chat/lobby/", true},
		{"ws/chat/lobby/", true},
		{"/ws/chat/", false},
		{"/ws/nope/", false},
		{"/ws/re/abc/", true},
		{"/ws/re/ABC/", false},
		{"/ws/nested/a/", true},
		{"/ws/nested//b/x-y/", true},
		{"/ws/nested/c/", false},
		{"/ws/guarded/room/7/", true},
		{"/ws/guarded/room/x/", false},
		{"/ws/dead/", false},
		{"/ws/plain/", true},
		{"", false},
	}
	for _, tt := range tests {
		s := &canal.Scope{Type: "websocket", Path: tt.path}
		if got := r.Matches(s); got != tt.want {
			t.Errorf("Matches(%q) = %v, want %v", tt.path, got, tt.want)
		}
		if s.Route != nil || s.RoutePattern != "" {
			t.Errorf("Matches(%q) wrote to the scope: %+v", tt.path, s)
		}
		// Connect agrees: it refuses with 404 exactly when Matches says no.
		_, err := r.Connect(context.Background(), conn(tt.path))
		var rej *canal.RejectError
		refused := errors.As(err, &rej) && rej.Status == 404
		if refused == tt.want {
			t.Errorf("Connect(%q): err %v, but Matches = %v", tt.path, err, tt.want)
		}
	}
	// A chain around the router is a Matcher answering as the router does, and
	// matching runs no middleware.
	mw.n = 0
	root := canal.Chain{mw.mw}.Then(r)
	if _, ok := root.(canal.Matcher); !ok {
		t.Fatal("a chain around a Router is not a canal.Matcher")
	}
	if canal.Matches(root, &canal.Scope{Path: "/ws/nope/"}) || !canal.Matches(root, &canal.Scope{Path: "/ws/chat/x/"}) {
		t.Fatal("the chain's answers differ from the router's")
	}
	if mw.n != 0 {
		t.Fatalf("matching ran the middleware %d times", mw.n)
	}
	var zero Router
	if zero.Matches(&canal.Scope{Path: "/"}) {
		t.Fatal("the zero Router matched")
	}
}

func TestRouterMatchesAllocs(t *testing.T) {
	r := benchRouter()
	hit, miss := &canal.Scope{Path: "/ws/chat/lobby/"}, &canal.Scope{Path: "/ws/nope/"}
	if n := testing.AllocsPerRun(100, func() { r.Matches(hit); r.Matches(miss) }); n != 0 {
		t.Fatalf("Matches: %v allocations", n)
	}
}
