// Command loadgen drives the benchmark's servers (bench/README.md) and writes one
// JSON result per cell (bench/internal/result).
//
//	loadgen w1 …      handshakes/s with fresh tickets
//	loadgen w2 …      group fan-out: burst and paced, through a publisher process
//	loadgen w3 …      server memory per idle authenticated socket, pings flowing
//	loadgen soak …    w3 held for a long time, memory sampled
//	loadgen w4 …      echo round trips/s
//	loadgen stress …  w2 under a condition: quiet, busy or stalled (bench/README.md "Stress")
//	loadgen w5 …      w2 over several server processes on one Redis or a cluster (bench/README.md "W5")
//	loadgen publish … (internal) W5's Go publisher for a Redis Cluster (publish.py's protocol)
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

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal/bench/internal/result"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen w1|w2|w3|w4|w5|soak|stress|spin|worker|publish|freeport|waitport|redis [flags]")
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
	case "w5":
		err = runMeasure(ctx, cmd, args, w5)
	case "publish":
		err = runPublish(ctx, args)
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
	wire             contract // -contract: what the server sends (client.go)
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
	// w5
	urls         []string // one per server process; sockets are split evenly
	serverPIDs   []int
	redisPIDs    []int    // every redis-server of the layer (one, or the cluster's masters)
	redisAddrs   []string // the same, host:port, for INFO
	layerCluster []string // seed addresses when the layer is on a cluster (the Go publisher's)
	topology     string
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
	wire := fs.String("contract", "bench", "the server's wire: bench (greeting, {\"type\":\"group\"} frames, echo) or binary (cmd/canal: no greeting, {\"type\":\"bench.message\"} frames, no echo)")
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
	var urls, serverPIDs, redisPIDs, redisAddrs, layerCluster string
	fs.StringVar(&urls, "urls", "", "w5: the server processes' URLs, comma-separated (instead of -url)")
	fs.StringVar(&serverPIDs, "server-pids", "", "w5: their processes, in the same order (instead of -server-pid)")
	fs.StringVar(&redisPIDs, "redis-pids", "", "w5: the layer's redis-server processes, comma-separated (instead of -redis-pid)")
	fs.StringVar(&redisAddrs, "redis-addrs", "", "w5: the same servers' host:port, for INFO commandstats")
	fs.StringVar(&layerCluster, "layer-cluster", "", "w5: seed addresses of the layer's Redis Cluster (the go-core and go-pubsub publishers')")
	fs.StringVar(&cfg.topology, "topology", "", "w5: recorded: redis, pubsub, cluster or cluster-pubsub")
	_ = fs.Parse(args)
	var err error
	if cfg.wire, err = parseContract(*wire); err != nil {
		return err
	}
	cfg.urls, cfg.redisAddrs, cfg.layerCluster = list(urls), list(redisAddrs), list(layerCluster)
	if cfg.serverPIDs, err = pidList(serverPIDs); err == nil {
		cfg.redisPIDs, err = pidList(redisPIDs)
	}
	if err != nil {
		return err
	}
	if len(cfg.urls) > 0 {
		if len(cfg.urls) != len(cfg.serverPIDs) {
			return fmt.Errorf("%d -urls but %d -server-pids", len(cfg.urls), len(cfg.serverPIDs))
		}
		cfg.url, cfg.serverPID = cfg.urls[0], cfg.serverPIDs[0]
	}
	if len(cfg.redisPIDs) > 0 && cfg.redisPID == 0 {
		cfg.redisPID = -1 // tracked below from redisPIDs
	}
	if cfg.url == "" || cfg.redis == "" || cfg.serverPID == 0 {
		return errors.New("-url, -redis and -server-pid (or -urls and -server-pids) are required")
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
	if name == "w5" {
		cell.Param, cell.Topology, cell.Procs = cfg.sockets, cfg.topology, len(cfg.urls)
	}
	err = fn(ctx, &cfg, cell)
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
// W5 has several servers (all on core 0) and Redis nodes.
func (cfg *config) tracked(workers ...int) []tracked {
	servers := cfg.serverPIDs
	if len(servers) == 0 {
		servers = []int{cfg.serverPID}
	}
	var t []tracked
	for _, pid := range servers {
		t = append(t, tracked{"server", pid, "0"})
	}
	t = append(t, tracked{"loadgen", os.Getpid(), "1"})
	for _, pid := range workers {
		t = append(t, tracked{"loadgen", pid, "1"})
	}
	redis := cfg.redisPIDs
	if len(redis) == 0 && cfg.redisPID > 0 {
		redis = []int{cfg.redisPID}
	}
	for _, pid := range redis {
		t = append(t, tracked{"redis", pid, "1"})
	}
	return append(t, cfg.extra...)
}

// list splits a comma-separated flag; empty gives nil.
func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func pidList(s string) ([]int, error) {
	var out []int
	for _, f := range list(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("process id %q: want a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
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
// for a few seconds while it starts; it talks to that one server even when it is a
// cluster node. cluster-ready waits until every node of -nodes (W5's cluster) reports
// cluster_state:ok and knows all the others.
func redisCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("redis", flag.ExitOnError)
	u := fs.String("redis", "", "Redis URL")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after")
	nodes := fs.String("nodes", "", "cluster-ready: every node's host:port, comma-separated")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("usage: loadgen redis -redis URL ping|flushall|cluster-ready")
	}
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		opt, err := rueidis.ParseURL(*u)
		var rc rueidis.Client
		if err == nil {
			opt.DisableCache, opt.ForceSingleClient = true, true
			rc, err = rueidis.NewClient(opt)
		}
		if err == nil {
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			switch strings.ToLower(fs.Arg(0)) {
			case "ping":
				err = rc.Do(c, rc.B().Ping().Build()).Error()
			case "flushall":
				err = rc.Do(c, rc.B().Flushall().Build()).Error()
			case "cluster-ready":
				err = clusterReady(c, list(*nodes))
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

// clusterReady checks that every node says cluster_state:ok and knows len(nodes) masters.
func clusterReady(ctx context.Context, nodes []string) error {
	if len(nodes) == 0 {
		return errors.New("-nodes is required")
	}
	for _, a := range nodes {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			return err
		}
		info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		want := "cluster_known_nodes:" + itoa(len(nodes))
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) {
			return fmt.Errorf("%s: not ready yet", a)
		}
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
