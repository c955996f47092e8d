package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/canal-rt/canal/bench/internal/result"
)

// w4 measures echo round trips per second: -sockets authenticated sockets, each in a
// closed loop (send {"type":"echo",…}, wait for the same object back, repeat) for
// -warmup, then for the measured -duration.
func w4(ctx context.Context, cfg *config, cell *result.Cell) error {
	if !cfg.wire.echo {
		return fmt.Errorf("-contract %s has no echo: W4 does not apply", cfg.wire.name)
	}
	rc, err := newRedis(cfg.redis)
	if err != nil {
		return err
	}
	tickets, err := issueTickets(ctx, rc, cfg.sockets, "w4-")
	rc.Close()
	if err != nil {
		return err
	}
	d, err := newDialer(cfg.url, "", cfg.connectTimeout, cfg.wire)
	if err != nil {
		return err
	}
	conns, errs := openAll(ctx, d, tickets, cfg.connConcurrency, cfg.connectTimeout)
	defer func() {
		for _, c := range conns {
			closeNormally(c)
		}
	}()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d sockets failed to open: %v", cfg.sockets-len(conns), cfg.sockets, errs)
	}

	text := strings.Repeat("x", cfg.textBytes)
	var measuring atomic.Bool
	var count atomic.Int64
	var h hist
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failMu sync.Mutex
	var fail error
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := int64(i) << 32
			buf := make([]byte, 0, 256)
			for {
				select {
				case <-stop:
					return
				default:
				}
				seq++
				t0 := time.Now()
				buf = append(buf[:0], `{"type":"echo","seq":`...)
				buf = strconv.AppendInt(buf, seq, 10)
				buf = append(buf, `,"ts":`...)
				buf = strconv.AppendInt(buf, t0.UnixNano(), 10)
				buf = append(buf, `,"text":"`...)
				buf = append(buf, text...)
				buf = append(buf, `"}`...)
				_ = c.SetWriteDeadline(t0.Add(cfg.connectTimeout))
				err := c.WriteMessage(websocket.TextMessage, buf)
				var reply []byte
				if err == nil {
					_ = c.SetReadDeadline(t0.Add(cfg.connectTimeout))
					_, reply, err = c.ReadMessage()
				}
				if err == nil {
					if got, ok := intField(reply, "seq"); !ok || got != seq || !typeIs(reply, "echo") {
						err = fmt.Errorf("unexpected reply %.80q", reply)
					}
				}
				if err != nil {
					select {
					case <-stop: // closing at the end
					default:
						failMu.Lock()
						if fail == nil {
							fail = err
						}
						failMu.Unlock()
					}
					return
				}
				if measuring.Load() {
					h.Record(time.Since(t0).Microseconds())
					count.Add(1)
				}
			}
		}()
	}
	sleep(ctx, cfg.warmup)
	meter := newCPUMeter(cfg.tracked())
	measuring.Store(true)
	sleep(ctx, cfg.duration)
	measuring.Store(false)
	n := count.Load()
	window, cpu := meter.stop()
	close(stop)
	// Each loop ends after its round trip in flight, so that no server is left
	// writing to a closed socket; a reply that never comes is cut short after 5 s.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, c := range conns {
			_ = c.SetReadDeadline(time.Now())
		}
		<-done
	}

	snap := h.Snapshot()
	q, max := snap.Quantiles(0.5, 0.99)
	cell.Phases = append(cell.Phases, result.Phase{Name: "echo", WindowS: window, CPU: cpu, Metrics: map[string]float64{
		"round_trips_per_s": ratio(float64(n), window),
		"round_trips":       float64(n),
		"sockets":           float64(len(conns)),
		"p50_ms":            q[0],
		"p99_ms":            q[1],
		"max_ms":            max,
	}})
	if fail != nil {
		return fmt.Errorf("echo loop failed: %w", fail)
	}
	if n == 0 {
		return errors.New("no round trip completed")
	}
	return ctx.Err()
}

// openAll opens one authenticated socket per ticket, concurrency at a time. It returns
// the open sockets and the failures by kind.
func openAll(ctx context.Context, d *dialer, tickets []string, concurrency int, timeout time.Duration) ([]*websocket.Conn, map[string]int64) {
	conns := make([]*websocket.Conn, len(tickets))
	errs := map[string]int64{}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < concurrency && w < len(tickets); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(tickets)) {
					return
				}
				c, err := d.connect(ctx, tickets[i], timeout)
				if err != nil {
					mu.Lock()
					errs[errKind(err)]++
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	var failed int64
	for _, n := range errs {
		failed += n
	}
	if rest := int64(len(tickets)-len(out)) - failed; rest > 0 {
		errs["cancelled"] += rest
	}
	return out, errs
}

// sleep waits for d or ctx.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
