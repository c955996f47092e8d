package client_test

import (
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/canal-rt/canal/client"
)

// Serve canal.js next to the application's handlers.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET /canal.js", client.Handler())
	_ = mux
}

// On Fiber, next to the Canal server's mount.
func ExampleHandler_fiber() {
	app := fiber.New()
	app.Get("/canal.js", adaptor.HTTPHandler(client.Handler()))
	_ = app
}
