package canal_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
)

// A middleware is a func(next) Handler; Chain composes them in the order written.
func ExampleChain() {
	trace := func(name string) canal.Middleware {
		return func(next canal.Handler) canal.Handler {
			return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
				fmt.Println("enter", name)
				return next.Connect(ctx, c)
			})
		}
	}
	final := canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) {
		fmt.Println("handler")
		return nil, canal.Reject(403, "demo")
	})
	h := canal.Chain{trace("origin"), trace("auth")}.Then(final)
	_, err := h.Connect(context.Background(), nil)
	fmt.Println(err)
	// Output:
	// enter origin
	// enter auth
	// handler
	// canal: handshake rejected with HTTP 403: demo
}

// Middleware attaches typed values to the scope with a Key.
func ExampleKey() {
	var tenant = canal.NewKey[string]("tenant")
	s := &canal.Scope{}
	tenant.Set(s, "acme")
	v, ok := tenant.Get(s)
	fmt.Println(v, ok)
	// Output: acme true
}

func ExampleMessage_ValidateType() {
	for _, m := range []canal.Message{
		{"type": "chat.message"},
		{"type": "_private"},
		{"text": "no type"},
	} {
		fmt.Println(m.ValidateType())
	}
	// Output:
	// <nil>
	// canal: invalid message: type "_private" names a private handler
	// canal: invalid message: message has no string "type"
}
