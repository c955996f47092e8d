// Command baseline is the benchmark's bare server: what a careful Go programmer writes
// without a framework, with the same behaviour as the Canal and Channels servers.
//
//   - net/http and fasthttp/websocket's net/http Upgrader (a gorilla/websocket fork);
//
//   - ?ticket=T consumed with one GETDEL of "canal:ticket:"+sha256hex(T) through
//     rueidis; unknown tickets get 403 before the upgrade;
//
//   - on accept: {"type":"hello","user":…}; client JSON objects are echoed (decoded and
//     re-encoded, as the other servers do);
//
//   - one Redis SUBSCRIBE to bench:bench for the whole process; each published
//     message {"seq","ts","text"} becomes {"type":"group",…}, encoded once into a
//     PreparedMessage shared by every socket;
//
//   - one writer goroutine per socket with a bounded queue (a full queue closes the
//     socket, like Canal's slow-consumer policy), keepalive pings every -ping.
//
//   - stress mode (bench/run.sh --stress): -debug-addr serves the goroutine count and
//     the connections ended, by cause (bench/internal/debugstats); users named
//     "stall-…" also receive bench:bench-stall, a stream meant to overflow their
//     buffers. A socket dropped by the full-queue policy counts as 1013 (the code
//     Canal's slow-consumer policy uses; no close frame can reach a full socket), a
//     failed or timed-out write or read as 1006, a client's close frame as its code.
//
//     baseline -addr 127.0.0.1:8003 -redis redis://127.0.0.1:6379/0 -ping 10s
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal/bench/internal/debugstats"
)

const (
	ticketPrefix = "canal:ticket:"
	channel      = "bench:bench"
	stallChannel = "bench:" + debugstats.StallGroup
	sendQueue    = 256
	readLimit    = 64 << 10
	writeTimeout = 10 * time.Second
)

// hello, echo and group are the frames the server sends.
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

type client struct {
	ws      *websocket.Conn
	out     chan *websocket.PreparedMessage
	done    chan struct{}
	once    sync.Once
	user    string
	stalled bool // a stress-mode non-reader: also receives stallChannel
	code    int  // why the server ended it (set once, in stop)
}

// stop ends the connection; the first caller's code is the one recorded.
func (c *client) stop(code int) {
	c.once.Do(func() {
		c.code = code
		close(c.done)
	})
}

// enqueue never blocks: a client whose queue is full is closed.
func (c *client) enqueue(pm *websocket.PreparedMessage) {
	select {
	case c.out <- pm:
	case <-c.done:
	default:
		c.stop(1013)
	}
}

type hub struct {
	mu      sync.RWMutex
	clients map[*client]struct{}
}

func (h *hub) add(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

func (h *hub) broadcast(pm *websocket.PreparedMessage, stalledOnly bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if !stalledOnly || c.stalled {
			c.enqueue(pm)
		}
	}
}

type server struct {
	rdb      rueidis.Client
	hub      *hub
	upgrader websocket.Upgrader
	ping     time.Duration
}

func (s *server) serveWS(w http.ResponseWriter, r *http.Request) {
	user, status := s.consume(r.Context(), r.URL.Query().Get("ticket"))
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	c := &client{ws: ws, out: make(chan *websocket.PreparedMessage, sendQueue), done: make(chan struct{}),
		user: user, stalled: debugstats.Stalled(user)}
	if pm, err := prepare(hello{Type: "hello", User: user}); err == nil {
		c.enqueue(pm) // first, before any group message
	}
	s.hub.add(c)
	go s.writer(c)
	s.reader(c)
}

// consume redeems a ticket: 0 and the username, or an HTTP status.
func (s *server) consume(ctx context.Context, t string) (string, int) {
	if !wellFormed(t) {
		return "", http.StatusForbidden
	}
	sum := sha256.Sum256([]byte(t))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := s.rdb.Do(ctx, s.rdb.B().Getdel().Key(ticketPrefix+hex.EncodeToString(sum[:])).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return "", http.StatusForbidden
	}
	if err != nil {
		return "", http.StatusServiceUnavailable
	}
	var u struct {
		Username string `json:"username"`
	}
	if json.Unmarshal(b, &u) != nil || u.Username == "" {
		return "", http.StatusForbidden
	}
	return u.Username, 0
}

func wellFormed(t string) bool {
	if len(t) == 0 || len(t) > 512 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// reader runs on the request's goroutine until the socket fails; it echoes JSON.
func (s *server) reader(c *client) {
	readCode := 1006
	defer func() {
		s.hub.remove(c)
		c.stop(readCode)
		stats.Closed(c.user, c.code)
	}()
	c.ws.SetReadLimit(readLimit)
	deadline := func() { _ = c.ws.SetReadDeadline(time.Now().Add(2*s.ping + 10*time.Second)) }
	deadline()
	c.ws.SetPongHandler(func(string) error { deadline(); return nil })
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				readCode = ce.Code
			}
			return
		}
		deadline()
		if mt != websocket.TextMessage {
			continue
		}
		var m echo
		if err := json.Unmarshal(data, &m); err != nil {
			continue
		}
		pm, err := prepare(m)
		if err != nil {
			continue
		}
		c.enqueue(pm)
	}
}

// writer is the socket's only writer: queued frames and pings.
func (s *server) writer(c *client) {
	t := time.NewTicker(s.ping)
	defer func() {
		t.Stop()
		_ = c.ws.Close()
	}()
	for {
		select {
		case pm := <-c.out:
			_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.ws.WritePreparedMessage(pm); err != nil {
				c.stop(1006)
				return
			}
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				c.stop(1006)
				return
			}
		case <-c.done:
			return
		}
	}
}

func prepare(v any) (*websocket.PreparedMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return websocket.NewPreparedMessage(websocket.TextMessage, b)
}

// subscribe relays published messages to every socket, encoding each once.
func (s *server) subscribe(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.rdb.Receive(ctx, s.rdb.B().Subscribe().Channel(channel, stallChannel).Build(), func(msg rueidis.PubSubMessage) {
			var in struct {
				Seq  int64  `json:"seq"`
				TS   int64  `json:"ts"`
				Text string `json:"text"`
			}
			if json.Unmarshal([]byte(msg.Message), &in) != nil {
				return
			}
			pm, err := prepare(echo{Type: "group", Seq: in.Seq, TS: in.TS, Text: in.Text})
			if err != nil {
				return
			}
			s.hub.broadcast(pm, msg.Channel == stallChannel)
		})
		if ctx.Err() == nil {
			log.Printf("baseline: subscription ended: %v; resubscribing", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// stats counts goroutines and ended connections for the stress mode.
var stats = debugstats.New()

func main() {
	addr := flag.String("addr", "127.0.0.1:8003", "listen address")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	ping := flag.Duration("ping", 10*time.Second, "keepalive ping interval")
	debugAddr := flag.String("debug-addr", "", "stress mode: serve /debug/stats on this loopback address")
	flag.Parse()

	opt, err := rueidis.ParseURL(*redisURL)
	if err != nil {
		log.Fatal(err)
	}
	opt.DisableCache = true
	rdb, err := rueidis.NewClient(opt)
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &server{
		rdb:  rdb,
		hub:  &hub{clients: map[*client]struct{}{}},
		ping: *ping,
		upgrader: websocket.Upgrader{
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			CheckOrigin:     func(*http.Request) bool { return true },
		},
	}
	if err := stats.Start(ctx, *debugAddr); err != nil {
		log.Fatal(err)
	}
	go s.subscribe(ctx)

	mux := http.NewServeMux()
	mux.HandleFunc("/ws/bench/", s.serveWS)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
