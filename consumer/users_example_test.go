package consumer_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/presence"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

// Room tells each newcomer who is online, and follows permission changes live.
type Room struct {
	who   presence.Store
	group string
}

func (r *Room) Connect(ctx context.Context, c *consumer.Conn) error {
	if !c.User().Authenticated() {
		return canal.Reject(403, "log in first")
	}
	r.group = "room_" + c.Scope().Route.String("room")
	if err := c.GroupAdd(ctx, r.group); err != nil { // recorded in presence once accepted
		return err
	}
	if err := c.Accept(); err != nil {
		return err
	}
	online, err := r.who.Presence(ctx, r.group)
	if err != nil {
		return err
	}
	return c.SendJSON(map[string]any{"online": len(online)})
}

// UserChanged runs when Django calls refresh_user (Go: consumer.RefreshUser).
func (r *Room) UserChanged(ctx context.Context, c *consumer.Conn, old, new canal.User) error {
	if !new.Bool("can_chat") {
		return &canal.CloseError{Code: 4403, Reason: "no longer allowed"}
	}
	return nil
}

// PresenceEvent forwards presence.join and presence.leave to the browser.
func (r *Room) PresenceEvent(ctx context.Context, c *consumer.Conn, m canal.Message) error {
	return c.SendJSON(map[string]any{"event": m.Type(), "user": m["username"]})
}

// Example_users: presence per room, and a user disconnected from outside the
// consumer, as Django does with django_canal.realtime.disconnect_user.
func Example_users() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	layer, _ := layers.NewMemory(layers.MemoryOptions{}) // layers.NewRedis across processes
	defer layer.Close(ctx)
	who := presence.NewMemory(presence.Options{}) // presence.NewRedis across processes
	room, err := consumer.New(func() *Room { return &Room{who: who} }, consumer.Options[*Room]{
		Layer:          layer,
		Presence:       who,
		PresenceEvents: true,
		Events: map[string]consumer.EventFunc[*Room]{
			consumer.EventPresenceJoin:  (*Room).PresenceEvent,
			consumer.EventPresenceLeave: (*Room).PresenceEvent,
		},
	})
	if err != nil {
		panic(err)
	}
	tickets := ticket.NewMemory(ticket.MemoryOptions{}) // Django issues them in production
	auth, _ := middleware.Ticket(tickets, middleware.TicketOptions{})
	srv, err := server.New(auth(router.Must(router.Path("ws/room/<slug:room>/", room))), server.Options{})
	if err != nil {
		panic(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = app.Listener(ln) }()
	defer func() { _ = srv.Shutdown(ctx); _ = app.ShutdownWithContext(ctx) }()

	join := func(id, name string) *canaltest.Communicator {
		t, _ := tickets.Issue(ctx, canal.User{ID: id, Username: name, Attrs: map[string]any{"can_chat": true}}, 0)
		c, err := canaltest.Dial(ctx, "ws://"+ln.Addr().String()+"/ws/room/lobby/?ticket="+t, canaltest.DialOptions{})
		if err != nil {
			panic(err)
		}
		return c
	}
	show := func(c *canaltest.Communicator) { s, _ := c.ReceiveText(ctx); fmt.Println(s) }

	alice := join("1", "alice")
	show(alice) // the count (Connect sends it), then her own arrival (an event)
	show(alice)
	bob := join("2", "bob")
	show(alice)
	show(bob)
	show(bob)

	// Django: django_canal.realtime.disconnect_user(bob). Every process closes his sockets.
	_ = consumer.DisconnectUser(ctx, layer, "2", 0, "logged out")
	code, reason, _ := bob.ExpectClose(ctx)
	fmt.Println("bob closed:", code, reason)
	show(alice)
	_ = alice.Close(1000)
	// Output:
	// {"online":1}
	// {"event":"presence.join","user":"alice"}
	// {"event":"presence.join","user":"bob"}
	// {"online":2}
	// {"event":"presence.join","user":"bob"}
	// bob closed: 4403 logged out
	// {"event":"presence.leave","user":"bob"}
}
