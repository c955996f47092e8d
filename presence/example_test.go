package presence_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/presence"
)

// A user with two tabs joins once and leaves once; the list counts the tabs. A
// consumer does these calls itself with consumer.Options.Presence.
func ExampleNewMemory() {
	ctx := context.Background()
	who := presence.NewMemory(presence.Options{Claims: []string{"avatar"}})
	alice := canal.User{ID: "1", Username: "alice", Attrs: map[string]any{"avatar": "a.png", "email": "private"}}

	first, _ := who.Join(ctx, "chat_lobby", "tab1", alice)
	again, _ := who.Join(ctx, "chat_lobby", "tab2", alice)
	fmt.Println("first join:", first, again)

	online, _ := who.Presence(ctx, "chat_lobby")
	for _, e := range online {
		fmt.Println(e.Username, e.Connections, e.Claims)
	}

	last, _ := who.Leave(ctx, "chat_lobby", "tab1", alice)
	fmt.Println("last leave:", last)
	last, _ = who.Leave(ctx, "chat_lobby", "tab2", alice)
	fmt.Println("last leave:", last)
	// Output:
	// first join: true false
	// alice 2 map[avatar:a.png]
	// last leave: false
	// last leave: true
}
