// Command storm measures a reconnect storm: n clients connected to a Canal server are
// dropped at once (the server shuts down, as in a deploy) and a new server starts on
// the same address after a pause; each client comes back as canal.js does (a ticket
// from the "Django" ticket view before every attempt, exponential backoff with full
// jitter). It reports how long until every client is back, how hard the ticket view
// was hit (requests per second, peak over 100 ms windows, and how long requests
// queued), and how many attempts failed.
//
// The ticket view stands in for Django's: -workers requests served at once, each
// taking -latency (Django's runserver and a small gunicorn serve a few at a time), so
// the view's capacity is workers/latency requests a second; past it requests queue.
//
//	go run ./bench/cmd/storm -clients 5000
//
// Measured on the 2-core test machine (shared), 5,000 clients, 1 s downtime, a ticket
// view of 8 workers at 5 ms (1,600 requests/s):
//
//	spread   all back   ticket view peak (100 ms)   queue wait p99   requests/client
//	0.5 s    6.0 s      20,420/s                    3.35 s           1.32
//	5 s      5.5 s       2,650/s                    0.82 s           1.32
//	10 s    10.2 s       1,360/s                    0.04 s           1.25
//
// canal.js's default spread is 5 s: the view is over capacity for a moment, not for
// seconds, and every client is back within about spread + downtime.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
)

type options struct {
	clients     int
	minDelay    time.Duration
	maxDelay    time.Duration
	spread      time.Duration
	pause       time.Duration
	workers     int
	latency     time.Duration
	connectRate int
	deadline    time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.clients, "clients", 5000, "clients dropped at once")
	flag.DurationVar(&o.minDelay, "min-delay", 500*time.Millisecond, "canal.js minDelay")
	flag.DurationVar(&o.maxDelay, "max-delay", 30*time.Second, "canal.js maxDelay")
	flag.DurationVar(&o.spread, "spread", 5*time.Second, "canal.js spread: the first retry's window after an open connection drops")
	flag.DurationVar(&o.pause, "pause", time.Second, "time between the old server's shutdown and the new one's start")
	flag.IntVar(&o.workers, "workers", 8, "ticket view: requests served at once")
	flag.DurationVar(&o.latency, "latency", 5*time.Millisecond, "ticket view: time per request")
	flag.IntVar(&o.connectRate, "connect-rate", 2000, "first connections a second (before the storm)")
	flag.DurationVar(&o.deadline, "deadline", 3*time.Minute, "give up after")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

// canalServer is one Canal process: a recovering consumer on a memory layer.
type canalServer struct {
	srv *server.Server
	app *fiber.App
}

func startCanal(addr string, store ticket.Store, layer canal.Layer) (*canalServer, string, error) {
	h, err := consumer.New(func() *struct{} { return &struct{}{} }, consumer.Options[*struct{}]{
		Layer: layer, Groups: []string{"feed_1"}, Recover: []string{"feed_*"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, "", err
	}
	auth, err := middleware.Ticket(store, middleware.TicketOptions{Transports: middleware.TransportSubprotocol})
	if err != nil {
		return nil, "", err
	}
	routes, err := router.New(router.Path("ws/feed/", h))
	if err != nil {
		return nil, "", err
	}
	srv, err := server.New(canal.Chain{auth}.Then(routes), server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, "", err
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/ws")
	var ln net.Listener
	for range 50 { // the old server's port may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, "", err
	}
	go func() { _ = app.Listener(srv.Listener(ln)) }()
	return &canalServer{srv: srv, app: app}, ln.Addr().String(), nil
}

func (c *canalServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
	_ = c.app.ShutdownWithContext(ctx)
}

// ticketView is the stand-in for Django's ticket view, with its load recorded.
type ticketView struct {
	store   ticket.Store
	slots   chan struct{}
	latency time.Duration

	mu      sync.Mutex
	start   time.Time
	windows map[int]int // requests per 100 ms window since start
	waits   []time.Duration
}

func (v *ticketView) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	v.slots <- struct{}{}
	wait := time.Since(t0)
	time.Sleep(v.latency)
	tk, err := v.store.Issue(r.Context(), canal.User{ID: "1", Username: "reader"}, time.Minute)
	<-v.slots
	v.mu.Lock()
	if !v.start.IsZero() {
		v.windows[int(t0.Sub(v.start)/(100*time.Millisecond))]++
		v.waits = append(v.waits, wait)
	}
	v.mu.Unlock()
	if err != nil {
		http.Error(w, "store", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte(tk))
}

// client is one browser, reconnecting as canal.js does.
type client struct {
	o        options
	http     *http.Client
	ticket   string
	wsURL    string
	attempts atomic.Int64
	failures atomic.Int64
}

func (c *client) getTicket(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.ticket, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 256)
	n, _ := resp.Body.Read(b)
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status)
	}
	return string(b[:n]), nil
}

// keep connects, stays until dropped, and reconnects with backoff, reporting each
// open on opened, until ctx ends.
func (c *client) keep(ctx context.Context, opened chan<- struct{}) {
	attempt := 0
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for ctx.Err() == nil {
		c.attempts.Add(1)
		tk, err := c.getTicket(ctx)
		var ws *websocket.Conn
		if err == nil {
			ws, _, err = d.DialContext(ctx, c.wsURL, http.Header{"Sec-WebSocket-Protocol": {"canal.ticket, canal.ticket." + tk}})
		}
		if err == nil {
			attempt = 0
			opened <- struct{}{}
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					break
				}
			}
			ws.Close()
		} else {
			c.failures.Add(1)
		}
		// canal.js: full jitter over min(max, min * 2^attempt), and over spread for
		// the first retry after a drop.
		ceiling := min(c.o.maxDelay, c.o.minDelay<<min(attempt, 30))
		if ws != nil && attempt == 0 {
			ceiling = max(ceiling, c.o.spread)
		}
		attempt++
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(ceiling) + 1))):
		case <-ctx.Done():
		}
	}
}

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.deadline)
	defer cancel()
	layer, err := layers.NewMemory(layers.MemoryOptions{History: []layers.HistoryRule{{Group: "feed_*"}}})
	if err != nil {
		return err
	}
	defer layer.Close(context.Background())
	store := ticket.NewMemory(ticket.MemoryOptions{})
	view := &ticketView{store: store, slots: make(chan struct{}, o.workers), latency: o.latency, windows: map[int]int{}}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: view}
	go func() { _ = hs.Serve(tln) }()
	defer hs.Close()

	cs, addr, err := startCanal("127.0.0.1:0", store, layer)
	if err != nil {
		return err
	}
	// A recover position, so each reconnect also catches up (nothing to read here).
	pos, _ := layer.Publish(ctx, "feed_1", canal.Message{"type": "feed.item"})
	recover := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"feed_1":[%d,%q]}`, pos.Offset, pos.Epoch))
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	opened := make(chan struct{}, o.clients)
	clients := make([]*client, o.clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := &client{o: o, http: httpc, ticket: "http://" + tln.Addr().String() + "/ticket/",
			wsURL: "ws://" + addr + "/ws/feed/?recover=" + recover}
		clients[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); c.keep(ctx, opened) }()
		time.Sleep(time.Second / time.Duration(o.connectRate))
	}
	for range o.clients {
		select {
		case <-opened:
		case <-ctx.Done():
			return fmt.Errorf("first connections: %w", ctx.Err())
		}
	}
	fmt.Printf("%d clients connected; dropping them all (server shutdown), new server after %v\n", o.clients, o.pause)

	view.mu.Lock()
	view.start = time.Now()
	view.mu.Unlock()
	start := time.Now()
	cs.stop()
	time.Sleep(o.pause)
	cs, _, err = startCanal(addr, store, layer)
	if err != nil {
		return err
	}
	defer cs.stop()
	var half, p99, all time.Duration
	for i := range o.clients {
		select {
		case <-opened:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d back: %w", i, o.clients, ctx.Err())
		}
		switch i + 1 {
		case o.clients / 2:
			half = time.Since(start)
		case o.clients * 99 / 100:
			p99 = time.Since(start)
		case o.clients:
			all = time.Since(start)
		}
	}
	cancel()
	cs.stop()
	wg.Wait()

	view.mu.Lock()
	defer view.mu.Unlock()
	peak, total := 0, 0
	for _, n := range view.windows {
		peak, total = max(peak, n), total+n
	}
	slices.Sort(view.waits)
	q := func(p float64) time.Duration { return view.waits[int(p*float64(len(view.waits)-1))] }
	var failures int64
	for _, c := range clients {
		failures += c.failures.Load()
	}
	capacity := float64(o.workers) / o.latency.Seconds()
	fmt.Printf("back: half %v, 99%% %v, all %v (downtime %v)\n", half.Round(time.Millisecond), p99.Round(time.Millisecond), all.Round(time.Millisecond), o.pause)
	fmt.Printf("ticket view: %d requests (%.2f per client), peak %d in 100 ms (%.0f/s; capacity %.0f/s), queue wait p50 %v p99 %v max %v\n",
		total, float64(total)/float64(o.clients), peak, float64(peak)*10, capacity, q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), q(1).Round(time.Millisecond))
	fmt.Printf("failed attempts: %d\n", failures)
	return nil
}
