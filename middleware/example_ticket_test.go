package middleware_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

func ExampleTicket() {
	ctx := context.Background()
	store := ticket.NewMemory(ticket.MemoryOptions{})
	// Django's job in production: a signed-in page gets a ticket for its user.
	issue := func() string {
		t, err := store.Issue(ctx, canal.User{ID: "42", Username: "ada"}, 10*time.Second)
		if err != nil {
			panic(err)
		}
		return t
	}

	auth, err := middleware.Ticket(store, middleware.TicketOptions{})
	if err != nil {
		panic(err)
	}
	h := middleware.Stack(middleware.Recover(nil), auth)(canal.HandlerFunc(
		func(_ context.Context, c canal.Conn) (canal.Session, error) {
			s := c.Scope()
			// The ticket is gone from the scope: only the user remains.
			fmt.Printf("hello, %s (query %q, subprotocols %q)\n", s.User.Username, s.RawQuery, s.Subprotocols)
			return &nopSession{}, c.Accept(canal.AcceptOptions{})
		}))

	t := issue()
	connect := func(label string, scope *canal.Scope) {
		_, err := h.Connect(ctx, newConn(scope))
		fmt.Println(label, "→", outcome(err))
	}
	connect("?ticket=", &canal.Scope{RawQuery: "room=lobby&ticket=" + t})
	connect("same ticket again", &canal.Scope{RawQuery: "ticket=" + t})
	connect("forged ticket", &canal.Scope{RawQuery: "ticket=forged"})
	// Browsers: new WebSocket(url, ["canal.ticket", "canal.ticket." + ticket]).
	connect("subprotocol", &canal.Scope{Subprotocols: []string{"canal.ticket", "canal.ticket." + issue()}})
	// No ticket yet: the socket opens and the first frame must be {"ticket": "..."}.
	connect("no ticket", &canal.Scope{})
	// Output:
	// hello, ada (query "room=lobby", subprotocols [])
	// ?ticket= → HTTP 101
	// same ticket again → HTTP 403
	// forged ticket → HTTP 403
	// hello, ada (query "", subprotocols ["canal.ticket"])
	// subprotocol → HTTP 101
	// no ticket → HTTP 101
}

// The middleware in a server: Channels' AllowedHostsOriginValidator(TicketAuth(...)).
// In production the store is ticket.NewRedis on the Redis Django writes tickets to.
func ExampleTicket_server() {
	store := ticket.NewMemory(ticket.MemoryOptions{})
	origins, err := middleware.AllowedHosts([]string{"app.example.com"}, false)
	if err != nil {
		panic(err)
	}
	auth, err := middleware.Ticket(store, middleware.TicketOptions{
		Transports:  middleware.TransportSubprotocol | middleware.TransportFirstMessage,
		AuthTimeout: 3 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	app := canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
		if err := c.Accept(canal.AcceptOptions{}); err != nil { // selects "canal.ticket"
			return nil, err
		}
		return &nopSession{}, c.Send(canal.Text("hello " + c.Scope().User.Username))
	})
	srv, err := server.New(middleware.Stack(middleware.Recover(nil), origins, auth)(app), server.Options{})
	if err != nil {
		panic(err)
	}
	f := fiber.New()
	srv.Mount(f, "/ws")
	_ = f.Listen(":8001")
}
