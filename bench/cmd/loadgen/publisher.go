package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/layers"
)

// runPublish is W5's publisher for a Redis Cluster, which channels_redis cannot use:
// Canal's own layer (layers.NewRedis or layers.NewRedisPubSub in Cluster mode) sends
// group_send's message, {"type": "bench.message", "seq", "ts", "text"}, to the group.
// It speaks bench/peer/publish.py's protocol and flags (--wait-go, one JSON result
// line), so the load generator drives both alike.
func runPublish(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("publish", flag.ExitOnError)
	cluster := fs.String("cluster", "", "seed addresses of the Redis Cluster, comma-separated")
	backend := fs.String("backend", "core", "core (layers.NewRedis) or pubsub (layers.NewRedisPubSub)")
	_ = fs.String("redis", "", "ignored: publish.py's flag (the layer is on -cluster)")
	group := fs.String("group", "bench", "group")
	count := fs.Int("count", 0, "messages")
	rate := fs.Float64("rate", 0, "messages per second; 0 sends back to back")
	base := fs.Int64("seq-base", 0, "first sequence number")
	textBytes := fs.Int("text-bytes", 64, "bytes of text in each message")
	waitGo := fs.Bool("wait-go", false, `print {"ready": true} once connected, then wait for a line on stdin`)
	_ = fs.Parse(args)
	if *cluster == "" || *count <= 0 || *count > 1_000_000 || *rate < 0 {
		return errors.New("want --cluster, --count 1 … 1000000 and --rate ≥ 0")
	}
	seeds := strings.Split(*cluster, ",")
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var layer canal.Layer
	var err error
	switch *backend {
	case "core":
		layer, err = layers.NewRedis(dctx, layers.RedisOptions{Cluster: seeds})
	case "pubsub":
		layer, err = layers.NewRedisPubSub(dctx, layers.RedisPubSubOptions{Cluster: seeds})
	default:
		err = fmt.Errorf("--backend %q: want core or pubsub", *backend)
	}
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = layer.Close(cctx)
	}()
	// Connect before the clock starts, as a running process would be.
	if err := layer.GroupSend(dctx, *group+"-warmup", canal.Message{"type": "bench.warmup"}); err != nil {
		return err
	}
	if *waitGo {
		fmt.Println(`{"ready": true}`)
		if !bufio.NewScanner(os.Stdin).Scan() {
			return errors.New("stdin closed before go")
		}
	}
	text := strings.Repeat("x", *textBytes)
	cpu0 := cpuSelf()
	start := time.Now()
	var first, last int64
	for i := 0; i < *count; i++ {
		if *rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))); d > 0 {
				sleep(ctx, d)
			}
		}
		ts := time.Now().UnixNano()
		if i == 0 {
			first = ts
		}
		last = ts
		msg := canal.Message{"type": "bench.message", "seq": *base + int64(i), "ts": ts, "text": text}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := layer.GroupSend(sctx, *group, msg)
		cancel()
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(publisherOut{
		Sent: *count, FirstTS: first, LastTS: last,
		CPUS: cpuSelf() - cpu0, WallS: time.Since(start).Seconds(),
	})
}

// cpuSelf is this process's user+system CPU time in seconds.
func cpuSelf() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
