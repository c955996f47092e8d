package expr_test

import (
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/cmd/canal/internal/expr"
)

// A route's groups and rules, for a staff user who may view two content types.
func Example() {
	names := expr.Names{Route: []string{"room"}}
	groups, _ := expr.ParseTemplate("ct_{user.content_types}", names)
	staff, _ := expr.ParsePredicate(`user.permissions contains "news.view_article"`, names)

	conn := expr.Conn{
		User: canal.User{ID: "2", Username: "articles", Attrs: map[string]any{
			"content_types": []any{7, 8},
			"permissions":   []any{"news.view_article"},
		}},
		Route: canal.Args{"room": "lobby"},
	}
	g, err := groups.Expand(conn, 256)
	fmt.Println(g, err, staff.Eval(conn))
	// Output: [ct_7 ct_8] <nil> true
}
