package middleware_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/middleware"
)

// Token takes any credential an auth.Verifier checks (here a stand-in for a Django REST
// framework token table), from the query string, a bearer subprotocol or the first
// message.
func ExampleToken() {
	verify := func(_ context.Context, token string) (canal.User, error) {
		if token == "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b" {
			return canal.User{ID: "42", Username: "ada"}, nil
		}
		return canal.User{}, auth.ErrInvalid
	}
	token, err := middleware.Token(verify, middleware.TokenOptions{})
	if err != nil {
		panic(err)
	}
	h := token(canal.HandlerFunc(func(_ context.Context, c canal.Conn) (canal.Session, error) {
		fmt.Println("  hello", c.Scope().User.Username)
		return &nopSession{}, c.Accept(canal.AcceptOptions{})
	}))
	ctx := context.Background()
	const tok = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"

	fmt.Println("query: ws://host/ws/chat/?token=…")
	_, err = h.Connect(ctx, newConn(&canal.Scope{RawQuery: "token=" + tok}))
	fmt.Println(" ", outcome(err))

	fmt.Println(`subprotocol: new WebSocket(url, ["canal.token", "canal.token." + token])`)
	_, err = h.Connect(ctx, newConn(&canal.Scope{Subprotocols: []string{"canal.token", "canal.token." + tok}}))
	fmt.Println(" ", outcome(err))

	fmt.Println("first message: websocket.send(token)")
	c := newConn(&canal.Scope{})
	sess, err := h.Connect(ctx, c) // accepts, and waits for the token
	fmt.Println(" ", outcome(err))
	fmt.Println("  receive:", sess.Receive(ctx, c, canal.Text(tok)))
	sess.Disconnect(ctx, c, canal.CloseNormal)

	fmt.Println("a wrong token in the first message")
	c = newConn(&canal.Scope{})
	sess, _ = h.Connect(ctx, c)
	fmt.Println("  receive:", sess.Receive(ctx, c, canal.Text(`{"token": "forged"}`)))
	sess.Disconnect(ctx, c, canal.CloseUnauthorized)

	fmt.Println("no token, first message disabled")
	strict, err := middleware.Token(verify, middleware.TokenOptions{Transports: middleware.TransportSubprotocol})
	if err != nil {
		panic(err)
	}
	_, err = strict(h).Connect(ctx, newConn(&canal.Scope{}))
	fmt.Println(" ", err)
	// Output:
	// query: ws://host/ws/chat/?token=…
	//   hello ada
	//   HTTP 101
	// subprotocol: new WebSocket(url, ["canal.token", "canal.token." + token])
	//   hello ada
	//   HTTP 101
	// first message: websocket.send(token)
	//   HTTP 101
	//   hello ada
	//   receive: <nil>
	// a wrong token in the first message
	//   receive: canal: close 4401 (invalid token): auth: invalid credential
	// no token, first message disabled
	//   canal: handshake rejected with HTTP 403: missing token
}

// A credential that is not a valid subprotocol name, such as a django.core.signing
// token with its ':' separators, travels base64url-encoded.
func ExampleBearerProtocol() {
	fmt.Println(middleware.BearerProtocol("canal.token", "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo0Mn0.sig"))
	fmt.Println(middleware.BearerProtocol("canal.token", "42:1tPZ3b:Xq0Kj0"))
	// Output:
	// canal.token.eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo0Mn0.sig
	// canal.token-b64.NDI6MXRQWjNiOlhxMEtqMA
}
