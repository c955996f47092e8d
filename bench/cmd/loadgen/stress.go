package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
)

// stallPrefix and stallGroup are bench/internal/debugstats' StallPrefix and
// StallGroup, repeated so that the load generator stays free of the servers' code.
const (
	stallPrefix = "stall-"
	stallGroup  = "bench-stall"
)

// debugStats is the Go servers' /debug/stats answer (bench/internal/debugstats).
type debugStats struct {
	Goroutines     int         `json:"goroutines"`
	PeakGoroutines int64       `json:"peak_goroutines"`
	Stalled        debugCloses `json:"stalled"`
	Others         debugCloses `json:"others"`
}

type debugCloses struct {
	ByCode      map[string]int64 `json:"by_code"`
	Total       int64            `json:"total"`
	First1013NS int64            `json:"first_1013_ns"`
	Last1013NS  int64            `json:"last_1013_ns"`
	FirstNS     int64            `json:"first_ns"`
	LastNS      int64            `json:"last_ns"`
}

var debugClient = &http.Client{Timeout: 3 * time.Second}

func getDebug(ctx context.Context, rawURL string, reset bool) (*debugStats, error) {
	if rawURL == "" {
		return nil, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("-debug-url %q is not a loopback address", rawURL)
	}
	if reset {
		u.RawQuery = "reset=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := debugClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", rawURL, resp.StatusCode)
	}
	var s debugStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", rawURL, err)
	}
	return &s, nil
}

// rssWatch follows a process's peak RSS over one phase: VmHWM after resetting it
// (clear_refs 5; the kernel's own peak, exact) and, as a cross-check and a fallback
// when the reset is refused, VmRSS sampled every 100 ms.
type rssWatch struct {
	pid     int
	hwmOK   bool
	mu      sync.Mutex
	sampled int64
	stop    chan struct{}
	done    chan struct{}
}

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	w.hwmOK = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	if r, err := rssKiB(pid); err == nil {
		w.sampled = r
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if r, err := rssKiB(pid); err == nil {
					w.mu.Lock()
					w.sampled = max(w.sampled, r)
					w.mu.Unlock()
				}
			}
		}
	}()
	return w
}

// peak stops the sampling and returns the phase's peak RSS in KiB, and whether it
// is the kernel's VmHWM (else the 100 ms samples').
func (w *rssWatch) peak() (int64, bool) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	p := w.sampled
	w.mu.Unlock()
	if r, err := rssKiB(w.pid); err == nil {
		p = max(p, r)
	}
	if w.hwmOK {
		if h, err := statusKiB(w.pid, "VmHWM"); err == nil {
			return max(p, h), true
		}
	}
	return p, false
}

// startBusy starts the CPU busy loop (loadgen spin) pinned to cfg.busyCPU, at
// normal priority, for at most d; it dies with this process.
func startBusy(ctx context.Context, cfg *config, d time.Duration) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{self, "spin", "-duration", d.String()}
	if cfg.busyCPU != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("busy loop: -busy-cpu %s needs taskset: %w", cfg.busyCPU, err)
		}
		args = append([]string{ts, "-c", cfg.busyCPU}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func stopBusy(cmd *exec.Cmd) {
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// runSpin is the busy loop: one goroutine computing until -duration or a signal.
func runSpin(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("spin", flag.ExitOnError)
	d := fs.Duration("duration", time.Minute, "stop after this long")
	_ = fs.Parse(args)
	end := time.Now().Add(*d)
	x := uint64(1)
	for time.Now().Before(end) && ctx.Err() == nil {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	if x == 0 {
		fmt.Println(x) // keeps the loop from being optimised away
	}
	return nil
}

// stress is W2 (a burst, then paced messages, on the same sockets) under one
// condition:
//
//	quiet    nothing else runs on the server's core;
//	busy     a CPU busy loop (loadgen spin) shares the server's core during the phases;
//	stalled  cfg.stallPct % of the subscribers ("stall-…" users) never read after
//	         their greeting; during the burst a second publisher sends
//	         cfg.stallMessages messages of cfg.stallTextBytes to their group
//	         ("bench-stall", which no reader is in), more than the kernel's socket
//	         buffers and the server's own can hold, so that a bounded server must drop
//	         them. Loss and latency count the reading subscribers only.
//
// Each phase records, besides W2's metrics, the server's RSS before the first
// message (idle) and its peak in the phase, its goroutines (idle and peak) and the
// connections it ended, by close code, non-readers apart (from the Go servers'
// /debug/stats). A last phase "nonreaders" (stalled only) waits up to cfg.drainIdle
// for the server to end every non-reader and records how many it ended and when.
func stress(ctx context.Context, cfg *config, cell *result.Cell) error {
	if cfg.publisher == "" || cfg.publisherBackend == "" {
		return errors.New("-publisher and -publisher-backend are required")
	}
	switch cfg.condition {
	case "quiet", "busy":
	case "stalled":
		cfg.stall = int(math.Round(float64(cfg.sockets) * cfg.stallPct / 100))
		if cfg.stall < 1 || cfg.stall >= cfg.sockets {
			return fmt.Errorf("-stall-pct %v of %d sockets: want at least one reader and one non-reader", cfg.stallPct, cfg.sockets)
		}
	default:
		return fmt.Errorf("-condition %q: want quiet, busy or stalled", cfg.condition)
	}
	p, n, err := openPool(ctx, cfg, cell, cfg.deadline)
	if err != nil {
		return err
	}
	defer p.stop()
	stalled := p.stalledOpen()
	readers := n - stalled
	if readers <= 0 {
		return errors.New("no reading socket opened")
	}
	if stalled < cfg.stall {
		cell.Notes = append(cell.Notes, fmt.Sprintf("%d of %d non-readers opened", stalled, cfg.stall))
	}
	sleep(ctx, cfg.settle)
	idle, err := rssKiB(cfg.serverPID)
	if err != nil {
		return err
	}
	dbg, err := getDebug(ctx, cfg.debugURL, true)
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	idleG := -1.0
	if dbg != nil {
		idleG = float64(dbg.Goroutines)
	}

	if cfg.condition == "busy" {
		busy, err := startBusy(ctx, cfg, cfg.deadline)
		if err != nil {
			return err
		}
		defer stopBusy(busy)
		cfg.extra = append(cfg.extra, tracked{"busy", busy.Process.Pid, "0"})
		sleep(ctx, 200*time.Millisecond) // let it reach its first loop
	}

	paced := int(cfg.pacedRate*cfg.pacedDuration.Seconds() + 0.5)
	phases := []struct {
		name  string
		base  int64
		count int
		rate  float64
	}{
		{"burst", 0, cfg.burst, 0},
		{"paced", 1_000_000, paced, cfg.pacedRate},
	}
	var fillStart int64
	var fill *filler
	for _, ph := range phases {
		if ph.count <= 0 {
			continue
		}
		if _, err := getDebug(ctx, cfg.debugURL, true); err != nil {
			return fmt.Errorf("server stats: %w", err)
		}
		watch := watchRSS(cfg.serverPID)
		var beforeGo func()
		if cfg.condition == "stalled" && ph.name == "burst" {
			fill = startFill(ctx, cfg)
			beforeGo = fill.go_
		}
		m, cpu, window, err := fanout(ctx, cfg, p, readers, ph.base, ph.count, ph.rate, phaseHooks{beforeGo: beforeGo})
		peak, hwm := watch.peak()
		if fill != nil && ph.name == "burst" {
			out, ferr := fill.wait()
			if ferr != nil {
				return fmt.Errorf("non-readers' stream: %w", ferr)
			}
			fillStart = out.FirstTS
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		m["readers"] = float64(readers)
		m["nonreaders"] = float64(stalled)
		m["rss_idle_mib"] = float64(idle) / 1024
		m["rss_peak_mib"] = float64(peak) / 1024
		m["rss_peak_ratio"] = ratio(float64(peak), float64(idle))
		if !hwm {
			cell.Notes = append(cell.Notes, ph.name+": VmHWM could not be reset: peak RSS from 100 ms samples")
		}
		if err := addServerStats(ctx, cfg, m, idleG, fillStart); err != nil {
			return err
		}
		cell.Phases = append(cell.Phases, result.Phase{Name: ph.name, WindowS: window, Metrics: m, CPU: cpu})
		if m["closed"] > 0 {
			cell.Notes = append(cell.Notes, fmt.Sprintf("%s: %.0f reading sockets were closed by the server (or lost) so far", ph.name, m["closed"]))
		}
		if m["loss"] > 0 {
			cell.Notes = append(cell.Notes, fmt.Sprintf("%s: %.0f of %.0f deliveries to readers lost (%.2f %%)", ph.name, m["loss"], m["expected"], m["loss_pct"]))
		}
	}

	if cfg.condition == "stalled" && cfg.debugURL != "" {
		// Give the server time to end the non-readers it has not ended yet.
		end := time.Now().Add(cfg.drainIdle)
		for time.Now().Before(end) && ctx.Err() == nil {
			s, err := getDebug(ctx, cfg.debugURL, false)
			if err != nil {
				return fmt.Errorf("server stats: %w", err)
			}
			if s.Stalled.Total >= int64(stalled) {
				break
			}
			sleep(ctx, 100*time.Millisecond)
		}
		m := map[string]float64{"readers": float64(readers), "nonreaders": float64(stalled)}
		if err := addServerStats(ctx, cfg, m, idleG, fillStart); err != nil {
			return err
		}
		st, err := p.stats(false)
		if err != nil {
			return err
		}
		m["closed"] = float64(st.Closed)
		cell.Phases = append(cell.Phases, result.Phase{Name: "nonreaders", Metrics: m})
		cell.Notes = append(cell.Notes, fmt.Sprintf("non-readers: the server ended %.0f of %d (%.0f with 1013), first 1013 %s, last %s after the stream to them began; readers ended by the server: %.0f",
			m["nonreaders_closed"], stalled, m["nonreaders_closed_1013"], fmtMSAfter(m, "nonreaders_first_1013_ms"), fmtMSAfter(m, "nonreaders_last_1013_ms"), m["others_closed"]))
	}
	return ctx.Err()
}

func fmtMSAfter(m map[string]float64, k string) string {
	v, ok := m[k]
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.0f ms", v)
}

// addServerStats adds the server's goroutines and closes (when it serves
// /debug/stats) to m.
func addServerStats(ctx context.Context, cfg *config, m map[string]float64, idleG float64, fillStart int64) error {
	s, err := getDebug(ctx, cfg.debugURL, false)
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	if s == nil {
		return nil
	}
	m["goroutines_idle"] = idleG
	m["goroutines_peak"] = float64(s.PeakGoroutines)
	m["goroutines_end"] = float64(s.Goroutines)
	m["others_closed"] = float64(s.Others.Total)
	m["nonreaders_closed"] = float64(s.Stalled.Total)
	m["nonreaders_closed_1013"] = float64(s.Stalled.ByCode["1013"])
	for code, k := range s.Stalled.ByCode {
		m["nonreaders_closed_code_"+code] = float64(k)
	}
	for code, k := range s.Others.ByCode {
		m["others_closed_code_"+code] = float64(k)
	}
	if fillStart > 0 {
		if s.Stalled.First1013NS > 0 {
			m["nonreaders_first_1013_ms"] = float64(s.Stalled.First1013NS-fillStart) / 1e6
			m["nonreaders_last_1013_ms"] = float64(s.Stalled.Last1013NS-fillStart) / 1e6
		}
		if s.Stalled.FirstNS > 0 {
			m["nonreaders_first_close_ms"] = float64(s.Stalled.FirstNS-fillStart) / 1e6
			m["nonreaders_last_close_ms"] = float64(s.Stalled.LastNS-fillStart) / 1e6
		}
	}
	return nil
}

// filler is the stream to the non-readers, sent by a second publisher that starts
// together with the burst's.
type filler struct {
	ready  chan struct{} // closed when the publisher is connected
	failed chan struct{} // closed when it ended before that
	start  chan struct{} // closed to let it go
	done   chan struct{}
	out    publisherOut
	err    error
	once   sync.Once
	ctx    context.Context
}

func startFill(ctx context.Context, cfg *config) *filler {
	f := &filler{ready: make(chan struct{}), failed: make(chan struct{}), start: make(chan struct{}), done: make(chan struct{}), ctx: ctx}
	go func() {
		defer close(f.done)
		readied := false
		f.out, f.err = publishTo(ctx, cfg, stallGroup, cfg.stallTextBytes, 2_000_000, cfg.stallMessages, 0, func() {
			readied = true
			close(f.ready)
			select {
			case <-f.start:
			case <-ctx.Done():
			}
		})
		if !readied {
			close(f.failed)
		}
	}()
	return f
}

// go_ (the burst's beforeGo) waits until the stream's publisher is ready and lets it
// go, just before the burst's.
func (f *filler) go_() {
	select {
	case <-f.ready:
	case <-f.failed:
	case <-f.ctx.Done():
	}
	f.once.Do(func() { close(f.start) })
}

func (f *filler) wait() (publisherOut, error) {
	f.once.Do(func() { close(f.start) })
	<-f.done
	return f.out, f.err
}
