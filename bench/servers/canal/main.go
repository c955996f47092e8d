// Command canal is the benchmark's Canal server: the Channels peer's consumer
// (bench/peer/benchpeer/consumers.py) written with Canal's packages, the way the README
// and examples/chat write apps.
//
//   - middleware.Ticket with the query transport: ?ticket=T consumed with one GETDEL
//     of "canal:ticket:"+sha256hex(T) (ticket.NewRedis), 403 when unknown;
//
//   - a consumer that joins group "bench", accepts and greets
//     {"type":"hello","user":…}, echoes client JSON, and turns "bench.message" layer
//     events (Django's channel_layer.group_send) into {"type":"group",…}, encoded once
//     per message (consumer.Options.Frames);
//
//   - the channel layer: -layer redis, Canal's channels_redis-compatible layer on the
//     benchmark's Redis (core backend, Channels' defaults), -layer pubsub (the Pub/Sub
//     backend), or -layer memory; with -layer-cluster the Redis layers use a Redis
//     Cluster (W5) while tickets stay on -redis.
//
//     canal -addr 127.0.0.1:8000 -redis redis://127.0.0.1:6379/0 -ping 10s -layer redis
//     canal -layer-status    prints "redis" when this build has the Redis layer, else "pending"
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // only served with -pprof
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

const group = "bench"

// flushDelay is rueidis' MaxFlushDelay for the ticket store's and the layer's
// clients: the library's default (internal/redisconn.FlushDelay, which every Redis
// client Canal dials starts with) unless -flush-delay asks to measure another value.
var flushDelay = redisconn.FlushDelay

// Bench is the benchmark consumer, one per connection.
type Bench struct{}

type hello struct {
	Type string `json:"type"`
	User string `json:"user"`
}

type echo struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
	TS   int64  `json:"ts"`
	Text string `json:"text"`
}

type groupFrame struct {
	Type string `json:"type"`
	Seq  any    `json:"seq"`
	TS   any    `json:"ts"`
	Text string `json:"text"`
}

// Connect joins the group, accepts and greets the user the ticket named.
func (*Bench) Connect(ctx context.Context, c *consumer.Conn) error {
	if err := c.GroupAdd(ctx, group); err != nil {
		return err
	}
	if err := joinStall(ctx, c); err != nil { // stress mode only (stress.go)
		return err
	}
	if err := c.Accept(); err != nil {
		return err
	}
	return c.SendJSON(hello{Type: "hello", User: c.Scope().User.Username})
}

// ReceiveJSON echoes the client's object.
func (*Bench) ReceiveJSON(ctx context.Context, c *consumer.Conn, content json.RawMessage) error {
	var m echo
	if err := json.Unmarshal(content, &m); err != nil {
		return nil // not an echo object: ignored, as the other servers do
	}
	return c.SendJSON(m)
}

// benchFrame relays Django's group_send(group, {"type": "bench.message", …}): built
// once per message by consumer.Options.Frames, the same bytes to every member.
func benchFrame(m canal.Message) any {
	return groupFrame{Type: "group", Seq: m["seq"], TS: m["ts"], Text: m.String("text")}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL: tickets, and the channel layer with -layer redis")
	ping := flag.Duration("ping", 10*time.Second, "keepalive ping interval")
	layerName := flag.String("layer", "redis", "channel layer: redis (core), pubsub or memory")
	clusterSeeds := flag.String("layer-cluster", "", "comma-separated seed addresses of a Redis Cluster for the redis and pubsub layers (tickets stay on -redis)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this loopback address (profiling runs only)")
	flag.DurationVar(&flushDelay, "flush-delay", flushDelay, "rueidis MaxFlushDelay for every Redis client (default: the library's)")
	status := flag.Bool("layer-status", false, `print "redis" if this build has the Redis layer, else "pending", and exit`)
	flag.Parse()
	if *status {
		if redisLayerBuilt {
			fmt.Println("redis")
		} else {
			fmt.Println("pending")
		}
		return
	}
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	var cluster []string
	if *clusterSeeds != "" {
		cluster = strings.Split(*clusterSeeds, ",")
	}
	if err := run(*addr, *redisURL, *ping, *layerName, cluster); err != nil {
		if errors.Is(err, errLayerPending) {
			fmt.Fprintln(os.Stderr, "canal:", err)
			os.Exit(3)
		}
		log.Fatal(err)
	}
}

func run(addr, redisURL string, ping time.Duration, layerName string, cluster []string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := ticket.DialRedis(dctx, redisURL, ticket.RedisOptions{
		ClientOptions: func(o *rueidis.ClientOption) { o.MaxFlushDelay = flushDelay },
	})
	if err != nil {
		return err
	}
	defer store.Close()

	var layer canal.Layer
	switch layerName {
	case "redis", "pubsub":
		layer, err = newRedisLayer(layerName, redisURL, cluster)
	case "memory":
		layer, err = layers.NewMemory(layers.MemoryOptions{})
	default:
		err = fmt.Errorf("-layer %q: want redis, pubsub or memory", layerName)
	}
	if err != nil {
		return err
	}

	bench, err := consumer.New(func() *Bench { return &Bench{} }, consumer.Options[*Bench]{
		Layer:  layer,
		Frames: map[string]consumer.FrameFunc{"bench.message": consumer.JSONFrame(benchFrame)},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	auth, err := middleware.Ticket(store, middleware.TicketOptions{Transports: middleware.TransportQuery})
	if err != nil {
		return err
	}
	routes, err := router.New(router.Path("ws/bench/", bench))
	if err != nil {
		return err
	}
	srv, err := server.New(canal.Chain{auth}.Then(routes), server.Options{PingInterval: ping, Logger: logger})
	if err != nil {
		return err
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/ws")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := startDebug(ctx); err != nil { // stress mode only (stress.go)
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = app.ShutdownWithContext(sctx)
		_ = layer.Close(sctx)
	}()
	return srv.Listen(app, addr) // survives the file limit: 503 past MaxConnections
}
