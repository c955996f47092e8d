// Command server is the Go half of the Django demo: the WebSocket server that the
// Django site in ../site sends its users to, authorized by single-use tickets that
// Django writes to Redis.
//
//	go run ./examples/django/server -redis redis://127.0.0.1:6379/0
//
// Sockets: /ws/chat/<room>/ (a chat room; each user is greeted by name and told who
// is online, live) and /ws/notify/ (notifications for the logged-in user). The channel
// layer is layers.NewRedis on the same Redis, in channels_redis' format with its
// defaults, so Django reaches the sockets the Channels way: async_to_sync(
// get_channel_layer().group_send)("user_<id>", {"type": "notify", ...}) pushes a
// notification, and django_canal.realtime.disconnect_user (at logout, or from the
// admin's "disconnect" action) closes every socket of the user with 4403. Who is
// online is presence.NewRedis in the same Redis, which Django reads too
// (django_canal.realtime.presence). See ../README.md for the walkthrough.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8001", "listen address")
	redisURL := flag.String("redis", "", "Redis URL of Django's tickets and channel layer, the same as Django's REDIS_URL (required), e.g. redis://127.0.0.1:6379/0")
	origins := flag.String("allowed-origins", "http://127.0.0.1:8000,http://localhost:8000",
		"comma-separated origins whose pages may open sockets: the Django site's")
	sessionURL := flag.String("session-url", "",
		"Django's session endpoint, e.g. http://127.0.0.1:8000/session/: sockets that carry the sessionid cookie need no ticket (the secret comes from $CANAL_SESSION_TOKEN)")
	flag.Parse()

	if *redisURL == "" {
		fmt.Fprintln(os.Stderr, "server: -redis is required: the Redis of Django's tickets and channel layer, e.g. -redis redis://127.0.0.1:6379/0")
		flag.Usage()
		os.Exit(2)
	}
	app, srv, closeApp, err := newApp(config{
		RedisURL:       *redisURL,
		AllowedOrigins: splitList(*origins),
		SessionURL:     *sessionURL,
		SessionToken:   os.Getenv("CANAL_SESSION_TOKEN"), // not a flag: flags show in ps
	})
	if err != nil {
		log.Fatalf("server: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Listen(app, *addr) }()
	slog.Info("canal: serving the Django demo", "addr", "ws://"+*addr+"/ws/", "origins", *origins)

	select {
	case err = <-served: // could not listen, or stopped by itself
	case <-ctx.Done():
		slog.Info("canal: shutting down")
	}
	stop() // a second signal kills at once

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Sockets first (they get 1001 and leave their groups), then HTTP, then the layer
	// and the Redis client.
	errs := []error{err, srv.Shutdown(sctx), app.ShutdownWithContext(sctx), closeApp(sctx)}
	if err := errors.Join(errs...); err != nil {
		log.Fatalf("server: %v", err)
	}
}

// splitList splits a comma-separated flag, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
