// Command chat is Django Channels' tutorial chat on Canal: open
// http://127.0.0.1:8000/ in two tabs, join the same room, and talk.
//
//	go run ./examples/chat
//
// It needs nothing else: the channel layer is in memory.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	hosts := flag.String("allowed-hosts", "localhost,127.0.0.1,[::1]", "hosts whose pages may open sockets (comma-separated, Django's ALLOWED_HOSTS syntax)")
	flag.Parse()

	app, srv, layer, err := newApp(config{AllowedHosts: strings.Split(*hosts, ",")})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // sockets get 1001 and leave their groups
		_ = app.ShutdownWithContext(ctx)
		_ = layer.Close(ctx)
	}()
	log.Printf("chat: open http://%s/ in two browser tabs", *addr)
	if err := app.Listen(*addr); err != nil {
		log.Fatal(err)
	}
}
