package ticket_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/ticket"
)

func Example() {
	ctx := context.Background()
	store := ticket.NewMemory(ticket.MemoryOptions{})

	// Django's job in production: issue a ticket for a signed-in user.
	t, err := store.Issue(ctx, canal.User{ID: "42", Username: "alice", Attrs: map[string]any{"is_staff": true}}, 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("ticket length:", len(t))

	// The WebSocket server's job: consume the ticket presented by the client.
	u, err := store.Consume(ctx, t)
	fmt.Println(u.ID, u.Username, u.Attrs["is_staff"], err)

	// A ticket opens one connection only.
	_, err = store.Consume(ctx, t)
	fmt.Println(errors.Is(err, ticket.ErrInvalid))
	// Output:
	// ticket length: 43
	// 42 alice true <nil>
	// true
}
