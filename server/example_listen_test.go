package server_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/server"
)

// greeter accepts every socket and says hello.
type greeter struct{}

func (*greeter) Connect(_ context.Context, c *consumer.Conn) error {
	if err := c.Accept(); err != nil {
		return err
	}
	return c.SendText("hello")
}

// Listen is app.Listen made safe for hostile load: the process survives its file
// limit, connections past MaxConnections get 503, and the app gets read timeouts.
// Pages of other sites are refused unless named in Origins.
func ExampleServer_Listen() {
	hello, _ := consumer.New(func() *greeter { return &greeter{} }, consumer.Options[*greeter]{})
	srv, _ := server.New(hello, server.Options{
		MaxConnections: 10000,                           // default: the file limit minus 512
		Origins:        []string{"https://example.com"}, // besides the request's own host
	})
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")

	addr := make(chan string, 1)
	app.Hooks().OnListen(func(d fiber.ListenData) error { addr <- d.Host + ":" + d.Port; return nil })
	served := make(chan error, 1)
	go func() { served <- srv.Listen(app, "127.0.0.1:0") }() // in main: log.Fatal(srv.Listen(app, addr))

	url := "ws://" + <-addr + "/"
	for _, origin := range []string{"https://example.com", "https://evil.example"} {
		c, err := canaltest.Dial(context.Background(), url, canaltest.DialOptions{Origin: origin})
		if err != nil {
			fmt.Println(origin, err)
			continue
		}
		text, _ := c.ReceiveText(context.Background())
		fmt.Println(origin, text)
		c.Abort()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = app.ShutdownWithContext(ctx)
	fmt.Println(<-served)
	// Output:
	// https://example.com hello
	// https://evil.example canaltest: handshake refused with HTTP 403
	// <nil>
}
