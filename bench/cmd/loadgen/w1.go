package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
)

// w1 measures handshakes per second: each handshake uses a fresh ticket (one GETDEL on
// the server), joins the group, is accepted and greeted; the client then drops the
// socket (TCP reset, no TIME_WAIT) and opens the next. -concurrency handshakes are in
// flight. The client is dialer.handshake, a few writes and reads with no library, so
// that the load generator's core is not what limits the count.
//
// All tickets are issued before the clock starts, so issuing costs the measurement
// nothing; -max-handshakes bounds the count, -duration the time.
func w1(ctx context.Context, cfg *config, cell *result.Cell) error {
	rc, err := newRedis(cfg.redis)
	if err != nil {
		return err
	}
	defer rc.Close()
	d, err := newDialer(cfg.url, "", cfg.connectTimeout, cfg.wire)
	if err != nil {
		return err
	}
	warm := cfg.concurrency * 4
	tickets, err := issueTickets(ctx, rc, warm+cfg.maxHandshakes, "w1-")
	if err != nil {
		return err
	}
	rc.Close()

	// Warm-up: a few rounds at full concurrency, not measured.
	if _, errs := handshakes(ctx, d, tickets[:warm], cfg.concurrency, time.Now().Add(cfg.warmup+cfg.connectTimeout), nil, cfg.connectTimeout); len(errs) > 0 {
		return fmt.Errorf("warm-up handshakes failed: %v", errs)
	}

	var h hist
	meter := newCPUMeter(cfg.tracked())
	ok, errs := handshakes(ctx, d, tickets[warm:], cfg.concurrency, time.Now().Add(cfg.duration), &h, cfg.connectTimeout)
	window, cpu := meter.stop()
	snap := h.Snapshot()
	q, max := snap.Quantiles(0.5, 0.99)
	var failed int64
	for _, n := range errs {
		failed += n
	}
	m := map[string]float64{
		"handshakes_per_s": ratio(float64(ok), window),
		"handshakes":       float64(ok),
		"failed":           float64(failed),
		"p50_ms":           q[0],
		"p99_ms":           q[1],
		"max_ms":           max,
		"concurrency":      float64(cfg.concurrency),
	}
	ph := result.Phase{Name: "handshake", WindowS: window, Metrics: m, CPU: cpu}
	// Per core: handshakes per second of the server's own CPU time. The rate above
	// is capped by whichever core saturates first (often core 1, the load generator's
	// and Redis'); this one is what the server costs, whoever is the bottleneck.
	if s := ph.RoleCPU("server"); s > 0 && ok > 0 {
		m["handshakes_per_server_cpu_s"] = float64(ok) / s
	}
	cell.Phases = append(cell.Phases, ph)
	if int(ok)+int(failed) >= cfg.maxHandshakes {
		cell.Notes = append(cell.Notes, fmt.Sprintf("all %d tickets used before -duration ended: raise -max-handshakes", cfg.maxHandshakes))
	}
	if failed > 0 {
		cell.Notes = append(cell.Notes, fmt.Sprintf("failed handshakes: %v", errs))
	}
	if ok == 0 {
		return errors.New("no handshake succeeded")
	}
	return ctx.Err()
}

// handshakes runs connect+greeting+reset with the given concurrency until the tickets
// or the time run out, recording each latency in h (when not nil). It returns the
// successes and the failures by kind.
func handshakes(ctx context.Context, d *dialer, tickets []string, concurrency int, until time.Time, h *hist, timeout time.Duration) (int64, map[string]int64) {
	var next, ok atomic.Int64
	var mu sync.Mutex
	errs := map[string]int64{}
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for ctx.Err() == nil && time.Now().Before(until) {
				i := next.Add(1) - 1
				if i >= int64(len(tickets)) {
					return
				}
				t0 := time.Now()
				err := d.handshake(ctx, tickets[i], timeout, buf)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					errs[errKind(err)]++
					mu.Unlock()
					continue
				}
				if h != nil {
					h.Record(time.Since(t0).Microseconds())
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return ok.Load(), errs
}
