// Command chat is Django Channels' tutorial chat on Canal: open
// http://127.0.0.1:8000/ in two tabs, join the same room, and talk.
//
//	go run ./examples/chat
//
// It needs nothing else: the channel layer and the sign-in tickets are in memory.
//
// With -redis redis://127.0.0.1:6379/0 the tickets live in Redis, as Django writes
// them, and so does the channel layer: layers.NewRedis, in channels_redis' format, with
// its default prefix "asgi". Chat processes on the same Redis then share their rooms
// (and a Django project with that Redis in CHANNEL_LAYERS can write to them too):
//
//	go run ./examples/chat -redis redis://127.0.0.1:6379/0 -addr 127.0.0.1:8000
//	go run ./examples/chat -redis redis://127.0.0.1:6379/0 -addr 127.0.0.1:8001
//
// Sign in on :8000 in one tab and on :8001 in another, join the same room, and talk.
//
// Each room shows who is online, live; with -redis, across every process. With
// CHAT_ADMIN_TOKEN set in the environment, an admin kicks a user out of every room
// and process:
//
//	curl -X POST -H "Authorization: Bearer $CHAT_ADMIN_TOKEN" -d '{"name":"bob"}' \
//	     -H 'Content-Type: application/json' http://127.0.0.1:8000/admin/kick
//
// (a Django site does the same from its admin with django_canal.realtime's
// disconnect_selected action).
//
// -layer chooses the channel layer: core (the default with -redis; channels_redis'
// RedisChannelLayer), pubsub (its RedisPubSubChannelLayer: lighter, but a message sent
// while a process is disconnected from Redis is lost to it) or memory (the default
// without -redis: this process only).
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
	redisURL := flag.String("redis", "", "Redis URL for tickets and the channel layer (default: both in memory)")
	layer := flag.String("layer", "", "channel layer: core or pubsub (Redis, default core with -redis) or memory (the default without -redis)")
	flag.Parse()

	a, err := newApp(config{AllowedHosts: strings.Split(*hosts, ","), RedisURL: *redisURL, Layer: *layer,
		AdminToken: os.Getenv("CHAT_ADMIN_TOKEN")})
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
	if err := a.srv.Listen(a.fiber, *addr); err != nil {
		log.Fatal(err)
	}
}
