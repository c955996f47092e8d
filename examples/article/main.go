// Command article is the Go half of two well-known recipes for authenticating
// WebSockets with Django credentials, on Canal instead of Channels or a hand-written
// websockets server:
//
//   - "Token authentication in Django Channels": the page logs in with a username and
//     password at Django REST framework's obtain_auth_token, gets the user's DRF
//     token, and opens ws://host/?token=<token>. The article's TokenAuthConsumer
//     answers its "Say hello !" command.
//   - The websockets guide "Integrate with Django": the page gets a 30-second
//     django-sesame token and sends it as the socket's first message; the server
//     greets the user, then streams the changes made in Django's admin to the
//     models the user may view or change. Django sends them with group_send over
//     channels_redis; the Go side receives them on layers.NewRedis.
//
// Django checks every token itself (django_canal's POST /auth/), so a deleted token,
// an inactive user or an expired token is refused: HTTP 403 before the upgrade, or
// close 4401 after a first message. The Go side only chooses, per socket, which kind
// of credential Django checks: see handler. Run it with the Django project in site/:
//
//	examples/article/run.sh
//
// or by hand, as examples/article/README.md shows.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"os"
	"slices"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
)

// handler is the whole Go side of both flows: for each socket, the kind of credential
// Django checks, then the consumer.
func handler(site, secret string, layer canal.Layer) canal.Handler {
	token := func(kind string) canal.Middleware { // "drf", "simplejwt", "sesame": REALTIME_AUTH_KINDS
		django := must(auth.Django(auth.DjangoOptions{URL: site + "/auth/", Token: secret, Kind: kind}))
		return must(middleware.Token(django, middleware.TokenOptions{}))
	}
	article := must(consumer.New(func() *TokenAuthConsumer { return &TokenAuthConsumer{} }, consumer.Options[*TokenAuthConsumer]{}))
	events := must(consumer.New(func() *Events { return &Events{} }, consumer.Options[*Events]{Layer: layer, Groups: []string{"events"}}))
	return router.Must(
		router.Path("", token("drf")(article)),             // the article: ws://host/?token=<DRF token>
		router.Path("jwt/", token("simplejwt")(article)),   // the same consumer, for simplejwt access tokens
		router.Path("ws/events/", token("sesame")(events)), // the guide: websocket.send(sesame token)
	)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8001", "listen address")
	site := flag.String("django", "http://127.0.0.1:8000", "the Django site: its /auth/ checks the tokens, and its pages may open sockets")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "the channel layer's Redis: Django's CHANNEL_LAYERS host")
	flag.Parse()

	// CANAL_SESSION_TOKEN is Django's REALTIME_SESSION_TOKEN (an environment variable,
	// since flags show in ps).
	layer := must(layers.NewRedis(context.Background(), layers.RedisOptions{Hosts: []string{*redisURL}}))
	srv := must(server.New(handler(*site, os.Getenv("CANAL_SESSION_TOKEN"), layer), server.Options{Origins: []string{*site}}))
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	log.Printf("article: sockets on ws://%s/, tokens checked by %s/auth/", *addr, *site)
	log.Fatal(srv.Listen(app, *addr))
}

// must stops the program on a configuration error: the constructors validate their
// options and say exactly what is wrong (an empty secret, a malformed URL).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TokenAuthConsumer is the article's consumer (an AsyncJsonWebsocketConsumer): it
// prints who connected, and answers the "Say hello !" command.
type TokenAuthConsumer struct{}

// Connect accepts the socket; the Token middleware has set the user already.
func (*TokenAuthConsumer) Connect(_ context.Context, c *consumer.Conn) error {
	u := c.User() // canal.User: ID, Username, and the claims Django's REALTIME_TICKET_CLAIMS adds
	log.Printf("article: %s <%s> connected", u.Username, u.String("email"))
	return c.Accept()
}

// ReceiveJSON is the article's receive_json.
func (*TokenAuthConsumer) ReceiveJSON(_ context.Context, c *consumer.Conn, content json.RawMessage) error {
	var m struct {
		Command    string `json:"command"`
		DataString string `json:"data_string"`
	}
	if err := json.Unmarshal(content, &m); err != nil || m.Command != "Say hello !" {
		return nil // the article ignores other commands
	}
	return c.SendJSON(map[string]any{
		"command_response": "The command to say hello was received ",
		"data_string_bacK": m.DataString, // (sic) the article's key, which its page reads
	})
}

// Events is the websockets guide's handler: once the first message's sesame token
// named a user, it says hello, then relays the admin's changes the user may see.
type Events struct{}

// Connect greets the user; the socket is already open, since the token came in its
// first message. Options.Groups has joined the group "events".
func (*Events) Connect(_ context.Context, c *consumer.Conn) error {
	if err := c.Accept(); err != nil {
		return err
	}
	return c.SendText("Hello " + c.User().Username + "!")
}

// Event relays an admin change (the guide's process_events) if its content type is
// one the user may view or change, a list Django computed when the socket connected.
func (*Events) Event(_ context.Context, c *consumer.Conn, m canal.Message) error {
	ct, _ := m["content_type_id"].(int64) // msgpack integers arrive as int64
	if m.Type() != "admin.event" || !slices.Contains(c.User().Int64s("content_types"), ct) {
		return nil
	}
	return c.SendText(m.String("payload"))
}
