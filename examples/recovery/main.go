// Command recovery is the example of issue 13, "nothing lost across a reconnect": a
// Django site publishes to feeds with history (django_canal.history.publish), its
// page reads them through canal.js from this Canal server, and a reconnect, after a
// network drop, a restart of this process or a move to another one, loses nothing.
//
//	go run ./examples/recovery -listen 127.0.0.1:8001 -redis redis://127.0.0.1:6379/0 \
//	    -origin http://127.0.0.1:8000
//
// See README.md for the Django side.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8001", "address to serve WebSockets, event streams and /canal.js on")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "the Redis Django uses (channel layer, history, tickets)")
	origins := flag.String("origin", "http://127.0.0.1:8000", "comma-separated origins of the pages allowed to connect")
	flag.Parse()
	if err := run(*listen, config{RedisURL: *redisURL, Origins: strings.Split(*origins, ",")}, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "recovery:", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM; it prints "listening <addr>" once it accepts.
func run(listen string, cfg config, out *os.File) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	a, err := newApp(startCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		a.close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- a.fiber.Listener(a.srv.Listener(ln)) }()
	fmt.Fprintln(out, "listening", ln.Addr())
	select {
	case <-ctx.Done():
	case err := <-served:
		a.close()
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.shutdown(sctx)
}
