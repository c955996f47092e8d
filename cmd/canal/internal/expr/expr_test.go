package expr

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/canal-rt/canal"
)

var conn = Conn{
	User: canal.User{ID: "42", Username: "alice", Attrs: map[string]any{
		"is_staff":      true,
		"is_superuser":  false,
		"permissions":   []any{"app.view_x", "app.change_x"},
		"content_types": []any{json.Number("7"), json.Number("9")},
		"tenant":        map[string]any{"id": json.Number("3"), "name": "acme"},
		"score":         json.Number("1.5"),
		"empty":         []any{},
	}},
	Route: canal.Args{"room": "lobby", "id": 42},
}

var routeNames = Names{Route: []string{"room", "id"}}

func TestTemplateExpand(t *testing.T) {
	cases := []struct {
		tmpl string
		want []string
	}{
		{"chat_{room}", []string{"chat_lobby"}},
		{"chat_{route.room}", []string{"chat_lobby"}},
		{"user_{user.id}", []string{"user_42"}},
		{"user_{id}", []string{"user_42"}}, // an int route value
		{"ct_{user.content_types}", []string{"ct_7", "ct_9"}},
		{"t{user.tenant.id}_{user.content_types}", []string{"t3_7", "t3_9"}},
		{"p.{user.permissions}.{user.content_types}", []string{"p.app.view_x.7", "p.app.view_x.9", "p.app.change_x.7", "p.app.change_x.9"}},
		{"staff_{user.is_staff}", []string{"staff_true"}},
		{"literal", []string{"literal"}},
		{"{{x}}_{room}", []string{"{x}_lobby"}},
		{"none_{user.empty}", nil},
	}
	for _, c := range cases {
		tp, err := ParseTemplate(c.tmpl, routeNames)
		if err != nil {
			t.Fatalf("%s: %v", c.tmpl, err)
		}
		got, err := tp.Expand(conn, 100)
		if err != nil {
			t.Fatalf("%s: %v", c.tmpl, err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s = %q, want %q", c.tmpl, got, c.want)
		}
	}
}

func TestTemplateExpandFails(t *testing.T) {
	cases := []struct{ tmpl, want string }{
		{"x_{user.missing}", "expr: no value: {user.missing} is missing"},
		{"x_{user.tenant}", "expr: no value: {user.tenant} is not text, a number or a boolean"},
		{"x_{user.score}", ""}, // a fraction prints: 1.5
		{"{user.permissions}{user.content_types}{user.permissions}", "expr: no value: {user.permissions} makes more than 4 names"},
	}
	for _, c := range cases {
		tp, err := ParseTemplate(c.tmpl, routeNames)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tp.Expand(conn, 4)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.tmpl, err)
		case c.want != "" && (err == nil || err.Error() != c.want || !errors.Is(err, ErrValue)):
			t.Errorf("%s: error %v, want %q", c.tmpl, err, c.want)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	cases := []struct{ tmpl, want string }{
		{"chat_{rom}", "{rom}: the route pattern captures only room, id"},
		{"chat_{room", "unclosed { at byte 5"},
		{"chat_}", "} without { at byte 5 (write }} for a brace)"},
		{"{user}", `"user" names the whole user: use user.id, user.username, user.authenticated or user.<claim>`},
		{"{user.id.x}", `"user.id.x": user.id has no fields`},
		{"{route.a.b}", `"route.a.b": route values are route.<name>`},
		{"{a-b}", `"a-b" is not a name (letters, digits and _ between dots)`},
		{"{x.y}", `"x.y": names start with user. or route. (or are a route value)`},
		{"{}", `"" is not a name (letters, digits and _ between dots)`},
	}
	for _, c := range cases {
		_, err := ParseTemplate(c.tmpl, routeNames)
		if err == nil || !errors.Is(err, ErrSyntax) || strings.TrimPrefix(err.Error(), "expr: syntax error: ") != c.want {
			t.Errorf("%s: error %v, want %q", c.tmpl, err, c.want)
		}
	}
	if _, err := ParseTemplate("{room}", Names{}); err == nil || !strings.Contains(err.Error(), "captures no values") {
		t.Errorf("no route values: %v", err)
	}
	if _, err := ParseTemplate("ct_{meta.ct}", Names{Fields: true}); err != nil {
		t.Errorf("bus field path: %v", err)
	}
}

func TestPredicates(t *testing.T) {
	cases := []struct {
		pred string
		want bool
	}{
		{"user.is_staff", true},
		{"user.is_superuser", false},
		{"not user.is_superuser", true},
		{"not user.is_staff", false},
		{"user.missing", false},
		{"not user.missing", true},
		{"user.authenticated", true},
		{"user.permissions", true},
		{"user.empty", false},
		{"user.score", true},
		{`user.permissions contains "app.view_x"`, true},
		{`user.permissions contains "app.delete_x"`, false},
		{`user.content_types contains 9`, true},
		{`user.content_types contains "9"`, true},
		{`user.missing contains "x"`, false},
		{`user.username contains "a"`, false}, // lists only
		{`user.id == route.id`, true},         // "42" and 42 compare as text
		{`user.id == 42`, true},
		{`user.id != 42`, false},
		{`user.username == "alice"`, true},
		{`user.username != "bob"`, true},
		{`user.is_staff == true`, true},
		{`user.is_staff == "true"`, false}, // booleans equal booleans only
		{`user.tenant.name == "acme"`, true},
		{`user.missing == user.missing2`, false},
		{`user.missing != "x"`, true},
		{`room == "lobby"`, true},
		{`user.score == 1.5`, true},
	}
	for _, c := range cases {
		p, err := ParsePredicate(c.pred, routeNames)
		if err != nil {
			t.Fatalf("%s: %v", c.pred, err)
		}
		if got := p.Eval(conn); got != c.want {
			t.Errorf("%s = %v, want %v", c.pred, got, c.want)
		}
	}
	anon := Conn{}
	for _, s := range []string{"user.authenticated", "user.is_staff", `user.id == ""`} {
		p, _ := ParsePredicate(s, routeNames)
		if got, want := p.Eval(anon), s == `user.id == ""`; got != want {
			t.Errorf("anonymous: %s = %v", s, got)
		}
	}
}

func TestParsePredicateErrors(t *testing.T) {
	cases := []struct{ pred, want string }{
		{"", "empty predicate"},
		{`"x"`, `"\"x\"": a predicate alone must be a name, not a literal`},
		{"user.a > 3", `"user.a > 3": unknown operator ">" (==, != or contains)`},
		{"not user.a == 3", `"not user.a == 3": not applies to a name alone (use != to negate a comparison)`},
		{"user.a == ", `"user.a == ": expected NAME, not NAME, or A == B, A != B, A contains B`},
		{`user.a == "x`, `"user.a == \"x": unterminated string`},
		{"user.a == 1x", "bad number 1x"},
		{"user.a and user.b", `"user.a and user.b": unknown operator "and" (==, != or contains)`},
		{"rooms", "{rooms}: the route pattern captures only room, id"},
	}
	for _, c := range cases {
		_, err := ParsePredicate(c.pred, routeNames)
		if err == nil || !errors.Is(err, ErrSyntax) || strings.TrimPrefix(err.Error(), "expr: syntax error: ") != c.want {
			t.Errorf("%q: error %v, want %q", c.pred, err, c.want)
		}
	}
}

func TestFieldsLookup(t *testing.T) {
	tp, err := ParseTemplate("ct_{content_type_id}", Names{Fields: true})
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	dec := json.NewDecoder(strings.NewReader(`{"content_type_id": 12, "x": 1}`))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	got, err := tp.Expand(Fields(f), 10)
	if err != nil || !slices.Equal(got, []string{"ct_12"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := tp.Expand(Fields{"other": 1}, 10); !errors.Is(err, ErrValue) {
		t.Fatalf("missing field: %v", err)
	}
}
