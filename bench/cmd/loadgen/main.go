// Command loadgen drives the benchmark's servers (bench/README.md) and writes one
// JSON result per cell (bench/internal/result).
//
//	loadgen w1 …      handshakes/s with fresh tickets
//	loadgen w2 …      group fan-out: burst and paced, through a publisher process
//	loadgen w3 …      server memory per idle authenticated socket, pings flowing
//	loadgen soak …    w3 held for a long time, memory sampled
//	loadgen w4 …      echo round trips/s
//	loadgen stress …  w2 under a condition: quiet, busy or stalled (bench/README.md "Stress")
//	loadgen spin …    (internal) the stress mode's CPU busy loop
//	loadgen worker …  (internal) holds sockets for w2, w3 and soak in its own process
//	loadgen freeport | waitport | redis   helpers for run.sh
//
// Every target must be a loopback address; every loop is bounded in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen w1|w2|w3|w4|soak|stress|spin|worker|freeport|waitport|redis [flags]")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "w1":
		err = runMeasure(ctx, cmd, args, w1)
	case "w2":
		err = runMeasure(ctx, cmd, args, w2)
	case "w3":
		err = runMeasure(ctx, cmd, args, w3)
	case "soak":
		err = runMeasure(ctx, cmd, args, soak)
	case "w4":
		err = runMeasure(ctx, cmd, args, w4)
	case "stress":
		err = runMeasure(ctx, cmd, args, stress)
	case "spin":
		err = runSpin(ctx, args)
	case "worker":
		err = runWorker(ctx, args)
	case "freeport":
		err = freePort()
	case "waitport":
		err = waitPort(ctx, args)
	case "redis":
		err = redisCmd(ctx, args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// config holds every measurement flag; each workload reads the ones it needs.
type config struct {
	url, redis       string
	serverPID        int
	redisPID         int
	run              int
	server, layer    string
	out              string
	deadline         time.Duration
	connectTimeout   time.Duration
	connConcurrency  int
	duration         time.Duration
	warmup           time.Duration
	concurrency      int
	maxHandshakes    int
	sockets          int
	perWorker        int
	textBytes        int
	burst            int
	pacedRate        float64
	pacedDuration    time.Duration
	drainIdle        time.Duration
	settle           time.Duration
	hold             time.Duration
	sample           time.Duration
	python           string
	publisher        string
	publisherBackend string
	// stress mode
	condition      string
	stallPct       float64
	stallMessages  int
	stallTextBytes int
	debugURL       string
	busyCPU        string
	stall          int       // non-reading sockets to open (from condition and stallPct)
	extra          []tracked // more processes whose CPU each phase records (the busy loop)
}

type workload func(ctx context.Context, cfg *config, cell *result.Cell) error

func runMeasure(ctx context.Context, name string, args []string, fn workload) error {
	var cfg config
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&cfg.url, "url", "", "server URL, ws://127.0.0.1:PORT/ws/bench/")
	fs.StringVar(&cfg.redis, "redis", "", "Redis URL (tickets)")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "server process, for CPU and RSS")
	fs.IntVar(&cfg.redisPID, "redis-pid", 0, "redis-server process, for CPU")
	fs.IntVar(&cfg.run, "run", 1, "run number (recorded)")
	fs.StringVar(&cfg.server, "server", "", "server name (recorded)")
	fs.StringVar(&cfg.layer, "layer", "", "server's channel layer (recorded)")
	fs.StringVar(&cfg.out, "out", "", "result file (JSON); default stdout")
	fs.DurationVar(&cfg.deadline, "deadline", 10*time.Minute, "hard bound on the whole command")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", 60*time.Second, "bound on one socket's handshake and greeting")
	fs.IntVar(&cfg.connConcurrency, "connect-concurrency", 64, "handshakes in flight while opening held sockets (per process)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "w1, w4: measured time")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "w1, w4: unmeasured time before")
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "w1: handshakes in flight")
	fs.IntVar(&cfg.maxHandshakes, "max-handshakes", 200000, "w1: tickets issued, the most handshakes measured")
	fs.IntVar(&cfg.sockets, "sockets", 200, "w2, w3, soak: subscribers or idle sockets; w4: echo sockets")
	fs.IntVar(&cfg.perWorker, "per-worker", 5000, "w2, w3, soak: sockets per worker process (each stays far below the 20,000 fd limit)")
	fs.IntVar(&cfg.textBytes, "text-bytes", 64, "bytes of text in each message")
	fs.IntVar(&cfg.burst, "burst", 100, "w2: messages in the burst")
	fs.Float64Var(&cfg.pacedRate, "paced-rate", 2, "w2: paced messages per second")
	fs.DurationVar(&cfg.pacedDuration, "paced-duration", 10*time.Second, "w2: paced sending time")
	fs.DurationVar(&cfg.drainIdle, "drain-idle", 10*time.Second, "w2: stop waiting for deliveries after this long without one")
	fs.DurationVar(&cfg.settle, "settle", 5*time.Second, "w3, soak: wait after the last handshake before measuring")
	fs.DurationVar(&cfg.hold, "hold", 30*time.Second, "w3, soak: time the sockets are held")
	fs.DurationVar(&cfg.sample, "sample", 30*time.Second, "soak: RSS sampling interval")
	fs.StringVar(&cfg.python, "python", "/usr/bin/python3", "w2: Python for the publisher")
	fs.StringVar(&cfg.publisher, "publisher", "", "w2: path of bench/peer/publish.py")
	fs.StringVar(&cfg.publisherBackend, "publisher-backend", "", "w2: core, pubsub or publish")
	fs.StringVar(&cfg.condition, "condition", "quiet", "stress: quiet, busy (a CPU busy loop on -busy-cpu) or stalled (-stall-pct of the subscribers never read)")
	fs.Float64Var(&cfg.stallPct, "stall-pct", 10, "stress, stalled: percentage of the subscribers that stop reading after the handshake")
	fs.IntVar(&cfg.stallMessages, "stall-messages", 640, "stress, stalled: messages sent to the non-readers' group during the burst")
	fs.IntVar(&cfg.stallTextBytes, "stall-text-bytes", 32768, "stress, stalled: bytes of text in each of those")
	fs.StringVar(&cfg.debugURL, "debug-url", "", "stress: the Go server's /debug/stats URL (goroutines, closes); empty for servers without one")
	fs.StringVar(&cfg.busyCPU, "busy-cpu", "0", "stress, busy: CPU list for taskset (the server's core); empty: not pinned")
	_ = fs.Parse(args)
	if cfg.url == "" || cfg.redis == "" || cfg.serverPID == 0 {
		return errors.New("-url, -redis and -server-pid are required")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.deadline)
	defer cancel()
	cell := &result.Cell{Run: cfg.run, Server: cfg.server, Workload: name, Layer: cfg.layer}
	if name == "w2" || name == "w3" || name == "soak" || name == "stress" {
		cell.Param = cfg.sockets
	}
	if name == "stress" {
		cell.Condition = cfg.condition
	}
	err := fn(ctx, &cfg, cell)
	if err != nil {
		cell.Error = err.Error()
		fmt.Fprintf(os.Stderr, "loadgen %s (%s): %v\n", name, cfg.server, err)
	}
	if cfg.out == "" {
		return writeJSON(os.Stdout, cell)
	}
	if werr := result.Write(cfg.out, cell); werr != nil {
		return werr
	}
	return nil // a failed measurement is recorded in the cell, not an exit status
}

// tracked returns the processes every phase records: the server on core 0, and
// Redis and this process on core 1.
func (cfg *config) tracked(workers ...int) []tracked {
	t := []tracked{{"server", cfg.serverPID, "0"}, {"loadgen", os.Getpid(), "1"}}
	for _, pid := range workers {
		t = append(t, tracked{"loadgen", pid, "1"})
	}
	if cfg.redisPID != 0 {
		t = append(t, tracked{"redis", cfg.redisPID, "1"})
	}
	return append(t, cfg.extra...)
}

// freePort prints a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

// waitPort waits until addr accepts connections, failing early if -pid exits.
func waitPort(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("waitport", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	pid := fs.Int("pid", 0, "process that should open it")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	_ = fs.Parse(args)
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", *addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if *pid != 0 {
			if err := syscall.Kill(*pid, 0); err != nil {
				return fmt.Errorf("process %d exited before listening on %s", *pid, *addr)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not listening after %v", *addr, *timeout)
}

// redisCmd runs one command (ping, flushall) against the benchmark's Redis, retrying
// for a few seconds while it starts.
func redisCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("redis", flag.ExitOnError)
	u := fs.String("redis", "", "Redis URL")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("usage: loadgen redis -redis URL ping|flushall")
	}
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		rc, err := newRedis(*u)
		if err == nil {
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			switch strings.ToLower(fs.Arg(0)) {
			case "ping":
				err = rc.Do(c, rc.B().Ping().Build()).Error()
			case "flushall":
				err = rc.Do(c, rc.B().Flushall().Build()).Error()
			default:
				err = fmt.Errorf("unknown command %q", fs.Arg(0))
			}
			cancel()
			rc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("redis %s: %v", fs.Arg(0), last)
}

func itoa(n int) string { return strconv.Itoa(n) }
