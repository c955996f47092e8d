// Command chat is Django Channels' tutorial chat on Canal: open
// http://127.0.0.1:8000/ in two tabs, join the same room, and talk.
//
//	go run ./examples/chat
//
// It needs nothing else: the channel layer and the sign-in tickets are in memory.
// With -redis redis://127.0.0.1:6379/0 the tickets live in Redis, as Django writes them.
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
	redisURL := flag.String("redis", "", "Redis URL for tickets (default: in memory)")
	flag.Parse()

	a, err := newApp(config{AllowedHosts: strings.Split(*hosts, ","), RedisURL: *redisURL})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx) // sockets get 1001 and leave their groups
	}()
	log.Printf("chat: open http://%s/ in two browser tabs", *addr)
	if err := a.fiber.Listen(*addr); err != nil {
		log.Fatal(err)
	}
}
