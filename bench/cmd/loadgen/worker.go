package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
)

// A worker is a load-generator process that holds -count sockets for w2, w3 and soak,
// so that no process comes near the 20,000 open-file limit. It talks to its
// coordinator in JSON lines: it prints {"event":"ready",…} once its sockets are open,
// then answers one line per command read from stdin:
//
//	{"cmd":"reset","base":B,"count":M}  start a phase: count group messages with
//	                                    seq in [B, B+M), zero the ping counts
//	{"cmd":"stats","hist":true}         counts so far (and the latency histogram)
//	{"cmd":"quit"}                      close every socket (1000) and exit
//
// It exits by itself when stdin closes or -lifetime runs out, and dies with its parent
// (the coordinator sets Pdeathsig).
//
// With -stall K (stress mode) its first K sockets belong to users named "stall-…" and
// are never read after their greeting: they keep the TCP connection open while the
// server's frames pile up in the buffers. They are not in any count below (received,
// open, closed, pings): those cover the reading sockets only.

type workerCmd struct {
	Cmd   string `json:"cmd"`
	Base  int64  `json:"base,omitempty"`
	Count int64  `json:"count,omitempty"`
	Hist  bool   `json:"hist,omitempty"`
}

type workerReady struct {
	Event   string           `json:"event"`
	Open    int              `json:"open"`              // reading sockets
	Stalled int              `json:"stalled,omitempty"` // non-reading sockets (-stall)
	Errors  map[string]int64 `json:"errors,omitempty"`
}

type workerStats struct {
	Open      int64      `json:"open"`       // sockets still open
	Closed    int64      `json:"closed"`     // sockets the server closed or lost
	Pings     int64      `json:"pings"`      // pings received since the last reset
	Pinged    int64      `json:"pinged"`     // sockets that got at least one ping since the last reset
	Received  int64      `json:"received"`   // distinct (socket, seq) group deliveries in the phase
	Dup       int64      `json:"dup"`        // repeated deliveries
	Stray     int64      `json:"stray"`      // group messages outside the phase's seq range
	FirstRecv int64      `json:"first_recv"` // Unix ns
	LastRecv  int64      `json:"last_recv"`  // Unix ns
	Hist      sparseHist `json:"hist,omitempty"`
}

// phaseState counts one phase's group deliveries. Each socket's bitset is written by
// that socket's reader only; the counters are atomic.
type phaseState struct {
	base, count int64
	bits        [][]uint64
	received    atomic.Int64
	dup         atomic.Int64
	stray       atomic.Int64
	first, last atomic.Int64
	h           hist
}

func (p *phaseState) record(sock int, seq, ts, now int64) {
	if seq < p.base || seq >= p.base+p.count {
		p.stray.Add(1)
		return
	}
	i := seq - p.base
	w, bit := &p.bits[sock][i/64], uint64(1)<<(i%64)
	if *w&bit != 0 {
		p.dup.Add(1)
		return
	}
	*w |= bit
	p.received.Add(1)
	p.h.Record((now - ts) / 1000)
	for {
		l := p.last.Load()
		if now <= l || p.last.CompareAndSwap(l, now) {
			break
		}
	}
	for {
		f := p.first.Load()
		if (f != 0 && now >= f) || p.first.CompareAndSwap(f, now) {
			break
		}
	}
}

type heldSocket struct {
	c      *websocket.Conn
	pings  atomic.Int64
	pinged atomic.Bool
}

func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	url := fs.String("url", "", "server URL")
	redisURL := fs.String("redis", "", "Redis URL (tickets)")
	count := fs.Int("count", 0, "sockets to hold")
	src := fs.String("src", "", "loopback source address")
	name := fs.String("name", "w", "user name prefix")
	conc := fs.Int("connect-concurrency", 64, "handshakes in flight")
	timeout := fs.Duration("connect-timeout", 60*time.Second, "bound on one handshake")
	lifetime := fs.Duration("lifetime", 15*time.Minute, "exit after this long whatever happens")
	stall := fs.Int("stall", 0, "stress mode: of -count, sockets that never read after the greeting")
	wireName := fs.String("contract", "bench", "the server's wire: bench or binary (client.go)")
	_ = fs.Parse(args)
	wire, err := parseContract(*wireName)
	if err != nil {
		return err
	}
	if *count <= 0 || *count > 15000 {
		return fmt.Errorf("-count %d: want 1 … 15000 (keep each process far below 20,000 fds)", *count)
	}
	if *stall < 0 || *stall >= *count {
		return fmt.Errorf("-stall %d: want 0 … %d", *stall, *count-1)
	}
	ctx, cancel := context.WithTimeout(ctx, *lifetime)
	defer cancel()

	rc, err := newRedis(*redisURL)
	if err != nil {
		return err
	}
	stallTickets, err := issueTickets(ctx, rc, *stall, stallPrefix+*name)
	if err != nil {
		rc.Close()
		return err
	}
	tickets, err := issueTickets(ctx, rc, *count-*stall, *name)
	rc.Close()
	if err != nil {
		return err
	}
	d, err := newDialer(*url, *src, *timeout, wire)
	if err != nil {
		return err
	}
	// The non-readers first: each has read its greeting and then is left alone.
	stalled, errs := openAll(ctx, d, stallTickets, *conc, *timeout)
	conns, errs2 := openAll(ctx, d, tickets, *conc, *timeout)
	for k, v := range errs2 {
		errs[k] += v
	}

	out := json.NewEncoder(os.Stdout)
	var outMu sync.Mutex
	send := func(v any) error {
		outMu.Lock()
		defer outMu.Unlock()
		return out.Encode(v)
	}

	var phase atomic.Pointer[phaseState]
	var open, closed atomic.Int64
	var quitting atomic.Bool
	socks := make([]*heldSocket, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		s := &heldSocket{c: c}
		socks[i] = s
		c.SetPingHandler(func(data string) error {
			s.pings.Add(1)
			s.pinged.Store(true)
			_ = c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
			return nil
		})
		open.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for {
				_, r, err := c.NextReader()
				if err != nil {
					open.Add(-1)
					if !quitting.Load() {
						closed.Add(1)
					}
					return
				}
				msg, err := readInto(r, &buf)
				if err != nil {
					continue
				}
				now := time.Now().UnixNano()
				if !typeIs(msg, wire.groupType) {
					continue
				}
				p := phase.Load()
				if p == nil {
					continue
				}
				seq, ok1 := intField(msg, "seq")
				ts, ok2 := intField(msg, "ts")
				if !ok1 || !ok2 {
					p.stray.Add(1)
					continue
				}
				p.record(i, seq, ts, now)
			}
		}()
	}
	if err := send(workerReady{Event: "ready", Open: len(conns), Stalled: len(stalled), Errors: errs}); err != nil {
		return err
	}

	quit := func() {
		quitting.Store(true)
		for _, s := range socks {
			closeNormally(s.c)
		}
		for _, c := range stalled {
			closeNormally(c)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	cmds := make(chan workerCmd)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var c workerCmd
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				fmt.Fprintf(os.Stderr, "worker: bad command %q\n", sc.Text())
				continue
			}
			cmds <- c
		}
	}()
	for {
		select {
		case <-ctx.Done():
			quit()
			return errors.New("lifetime over or interrupted")
		case c, ok := <-cmds:
			if !ok {
				quit()
				return nil // the coordinator went away
			}
			switch c.Cmd {
			case "reset":
				p := &phaseState{base: c.Base, count: c.Count, bits: make([][]uint64, len(socks))}
				for i := range p.bits {
					p.bits[i] = make([]uint64, (c.Count+63)/64)
				}
				for _, s := range socks {
					s.pings.Store(0)
					s.pinged.Store(false)
				}
				phase.Store(p)
				err = send(map[string]bool{"ok": true})
			case "stats":
				st := workerStats{Open: open.Load(), Closed: closed.Load()}
				for _, s := range socks {
					st.Pings += s.pings.Load()
					if s.pinged.Load() {
						st.Pinged++
					}
				}
				if p := phase.Load(); p != nil {
					st.Received, st.Dup, st.Stray = p.received.Load(), p.dup.Load(), p.stray.Load()
					st.FirstRecv, st.LastRecv = p.first.Load(), p.last.Load()
					if c.Hist {
						st.Hist = p.h.Snapshot()
					}
				}
				err = send(st)
			case "quit":
				quit()
				return send(map[string]bool{"ok": true})
			default:
				err = send(map[string]string{"error": "unknown command " + c.Cmd})
			}
			if err != nil {
				return err
			}
		}
	}
}

// readInto reads a whole message into *buf, growing it when needed.
func readInto(r io.Reader, buf *[]byte) ([]byte, error) {
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return b, nil
		}
		if err != nil {
			*buf = b
			return nil, err
		}
	}
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
