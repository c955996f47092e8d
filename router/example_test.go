package router_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/router"
)

// consumer stands in for a real consumer; its name shows which route matched.
type consumer string

func (consumer) Connect(context.Context, canal.Conn) (canal.Session, error) { return nil, nil }

// show prints what r does with path.
func show(r *router.Router, path string) {
	h, args, pattern, ok := r.Match(path)
	if !ok {
		fmt.Printf("%-28s no route (404)\n", path)
		return
	}
	fmt.Printf("%-28s %s %q %v\n", path, h, pattern, args)
}

// The routing.py of Channels' tutorial, in Go.
func ExampleNew() {
	r, err := router.New(
		router.Path("ws/echo/", consumer("echo")),
		router.Path("ws/chat/<str:room>/", consumer("chat")),
		router.Path("ws/game/<int:id>/", consumer("game")),
	)
	if err != nil {
		panic(err)
	}
	show(r, "/ws/echo/")
	show(r, "/ws/chat/café/")
	show(r, "/ws/game/42/")
	show(r, "/ws/game/x/")
	show(r, "/ws/echo") // no trailing-slash redirect
	// Output:
	// /ws/echo/                    echo "ws/echo/" map[]
	// /ws/chat/café/               chat "ws/chat/<str:room>/" map[room:café]
	// /ws/game/42/                 game "ws/game/<int:id>/" map[id:42]
	// /ws/game/x/                  no route (404)
	// /ws/echo                     no route (404)
}

// Each converter gives its value a type: int gives a Go int, the others strings.
func ExamplePath() {
	r := router.Must(
		router.Path("item/<int:id>/", consumer("item")),
		router.Path("post/<slug:slug>/", consumer("post")),
		router.Path("doc/<uuid:doc>/", consumer("doc")),
		router.Path("files/<path:file>", consumer("files")),
	)
	for _, path := range []string{
		"/item/007/",
		"/post/hello-world/",
		"/doc/075194d3-6885-417e-a8a8-6c931e272f00/",
		"/files/2024/report.pdf",
	} {
		_, args, _, _ := r.Match(path)
		for name, v := range args {
			fmt.Printf("%s = %v (%T)\n", name, v, v)
		}
	}
	// Output:
	// id = 7 (int)
	// slug = hello-world (string)
	// doc = 075194d3-6885-417e-a8a8-6c931e272f00 (string)
	// file = 2024/report.pdf (string)
}

// A *Router as a route's handler routes the rest of the path. When it has no match,
// the outer router goes on with its next route.
func ExamplePath_nested() {
	chat := router.Must(
		router.Path("chat/<str:room>/", consumer("chat")),
	)
	r := router.Must(
		router.Path("ws/<slug:tenant>/", chat),
		router.Path("ws/<slug:tenant>/<str:rest>/", consumer("other")),
	)
	show(r, "/ws/acme/chat/lobby/")
	show(r, "/ws/acme/news/")
	// Output:
	// /ws/acme/chat/lobby/         chat "ws/<slug:tenant>/chat/<str:room>/" map[room:lobby tenant:acme]
	// /ws/acme/news/               other "ws/<slug:tenant>/<str:rest>/" map[rest:news tenant:acme]
}

// Named groups are captured as strings; the expression always matches the whole path.
func ExampleRegex() {
	r := router.Must(
		router.Regex(`^ws/chat/(?P<room>[a-z]+)/(?P<page>[0-9]+)?$`, consumer("chat")),
	)
	show(r, "/ws/chat/lobby/2")
	show(r, "/ws/chat/lobby/")
	show(r, "/ws/chat/lobby/2/x")
	// Output:
	// /ws/chat/lobby/2             chat "^ws/chat/(?P<room>[a-z]+)/(?P<page>[0-9]+)?$" map[page:2 room:lobby]
	// /ws/chat/lobby/              chat "^ws/chat/(?P<room>[a-z]+)/(?P<page>[0-9]+)?$" map[room:lobby]
	// /ws/chat/lobby/2/x           no route (404)
}

// New reports a bad pattern before any connection arrives.
func ExampleNew_error() {
	_, err := router.New(router.Path("ws/<foo:x>/", consumer("x")))
	fmt.Println(err)
	var pe *router.PatternError
	fmt.Println(errors.As(err, &pe), pe.Reason)
	// Output:
	// router: route "ws/<foo:x>/": unknown converter "foo"
	// true unknown converter "foo"
}

// A route handler reads the captured values from the scope.
func ExampleRouter_Connect() {
	chat := canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
		s := c.Scope()
		fmt.Println("room:", s.Route.String("room"), "pattern:", s.RoutePattern)
		return nil, canal.Reject(403, "example only")
	})
	r := router.Must(router.Path("ws/", router.Must(router.Path("chat/<room>/", chat))))

	_, err := r.Connect(context.Background(), exampleConn("/ws/chat/lobby/"))
	fmt.Println(err)
	_, err = r.Connect(context.Background(), exampleConn("/ws/nowhere/"))
	fmt.Println(err)
	// Output:
	// room: lobby pattern: ws/chat/<room>/
	// canal: handshake rejected with HTTP 403: example only
	// canal: handshake rejected with HTTP 404: no route for path
}

// exampleConn is a connection with only a scope, enough for routing.
func exampleConn(path string) canal.Conn {
	return scopeOnly{&canal.Scope{Type: "websocket", Path: path}}
}

type scopeOnly struct{ s *canal.Scope }

func (c scopeOnly) Scope() *canal.Scope            { return c.s }
func (scopeOnly) Accept(canal.AcceptOptions) error { return nil }
func (scopeOnly) Accepted() bool                   { return false }
func (scopeOnly) Send(canal.Frame) error           { return canal.ErrNotAccepted }
func (scopeOnly) Close(int, string) error          { return nil }
func (scopeOnly) Deliver(canal.Message) bool       { return false }
func (scopeOnly) Context() context.Context         { return context.Background() }
