package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
)

// workerProc is a running worker and its pipes.
type workerProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	ready workerReady
}

func (w *workerProc) call(cmd workerCmd, reply any) error {
	b, _ := json.Marshal(cmd)
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, err)
	}
	if !w.out.Scan() {
		return fmt.Errorf("worker %d exited: %v", w.cmd.Process.Pid, w.out.Err())
	}
	return json.Unmarshal(w.out.Bytes(), reply)
}

// pool is the coordinator's set of workers.
type pool []*workerProc

// startWorkers spawns enough workers for cfg.sockets (at most cfg.perWorker each, each
// from its own loopback source address) and waits until all of them report ready.
func startWorkers(ctx context.Context, cfg *config, lifetime time.Duration) (pool, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	jobs, err := workerJobs(cfg)
	if err != nil {
		return nil, err
	}
	var p pool
	for i, job := range jobs {
		cmd := exec.CommandContext(ctx, self, "worker",
			"-url", job.url, "-redis", cfg.redis, "-count", itoa(job.count), "-stall", itoa(job.stall),
			"-src", "127.0.0."+itoa(2+i), "-name", "u"+itoa(i)+"-", "-contract", cfg.wire.name,
			"-connect-concurrency", itoa(cfg.connConcurrency),
			"-connect-timeout", cfg.connectTimeout.String(),
			"-lifetime", lifetime.String())
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.WaitDelay = 5 * time.Second
		in, err := cmd.StdinPipe()
		if err != nil {
			p.stop()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			p.stop()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			p.stop()
			return nil, err
		}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		p = append(p, &workerProc{cmd: cmd, in: in, out: sc})
	}
	// Workers open their sockets in parallel; each reports once done.
	errs := make(chan error, len(p))
	for _, w := range p {
		go func() {
			if !w.out.Scan() {
				errs <- fmt.Errorf("worker %d exited before it was ready", w.cmd.Process.Pid)
				return
			}
			errs <- json.Unmarshal(w.out.Bytes(), &w.ready)
		}()
	}
	for range p {
		if err := <-errs; err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// workerJob is one worker's share: its server and its sockets.
type workerJob struct {
	url          string
	count, stall int
}

// workerJobs splits cfg.sockets (and cfg.stall) evenly over the servers (cfg.urls,
// W5, or the one cfg.url), then each server's share over workers of at most
// cfg.perWorker sockets.
func workerJobs(cfg *config) ([]workerJob, error) {
	urls := cfg.urls
	if len(urls) == 0 {
		urls = []string{cfg.url}
	}
	if cfg.sockets < len(urls) {
		return nil, fmt.Errorf("%d sockets for %d servers", cfg.sockets, len(urls))
	}
	var jobs []workerJob
	for s, u := range urls {
		share, stall := split(cfg.sockets, len(urls), s), split(cfg.stall, len(urls), s)
		n := (share + cfg.perWorker - 1) / cfg.perWorker
		for i := 0; i < n; i++ {
			jobs = append(jobs, workerJob{url: u, count: split(share, n, i), stall: split(stall, n, i)})
		}
	}
	if len(jobs) > 200 {
		return nil, fmt.Errorf("%d workers: raise -per-worker", len(jobs))
	}
	return jobs, nil
}

// split returns part i of total divided into n parts that differ by at most one.
func split(total, n, i int) int {
	c := total / n
	if i < total%n {
		c++
	}
	return c
}

// stalledOpen counts the non-reading sockets opened (stress mode).
func (p pool) stalledOpen() int {
	n := 0
	for _, w := range p {
		n += w.ready.Stalled
	}
	return n
}

func (p pool) pids() []int {
	out := make([]int, 0, len(p))
	for _, w := range p {
		out = append(out, w.cmd.Process.Pid)
	}
	return out
}

// open counts the sockets opened, reading or not (stalledOpen).
func (p pool) open() (n int, errs map[string]int64) {
	errs = map[string]int64{}
	for _, w := range p {
		n += w.ready.Open + w.ready.Stalled
		for k, v := range w.ready.Errors {
			errs[k] += v
		}
	}
	return n, errs
}

// each sends cmd to every worker at once and returns the replies in order.
func (p pool) each(cmd workerCmd) ([]workerStats, error) {
	out := make([]workerStats, len(p))
	errs := make([]error, len(p))
	var wg sync.WaitGroup
	for i, w := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.call(cmd, &out[i])
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (p pool) stats(withHist bool) (workerStats, error) {
	all, err := p.each(workerCmd{Cmd: "stats", Hist: withHist})
	var s workerStats
	if withHist {
		s.Hist = sparseHist{}
	}
	for _, w := range all {
		s.Open += w.Open
		s.Closed += w.Closed
		s.Pings += w.Pings
		s.Pinged += w.Pinged
		s.Received += w.Received
		s.Dup += w.Dup
		s.Stray += w.Stray
		if w.FirstRecv != 0 && (s.FirstRecv == 0 || w.FirstRecv < s.FirstRecv) {
			s.FirstRecv = w.FirstRecv
		}
		if w.LastRecv > s.LastRecv {
			s.LastRecv = w.LastRecv
		}
		if withHist {
			s.Hist.Merge(w.Hist)
		}
	}
	return s, err
}

// stop asks every worker to close its sockets and waits for it, killing the ones that
// do not exit within a few seconds.
func (p pool) stop() {
	var wg sync.WaitGroup
	for _, w := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok map[string]any
			_ = w.call(workerCmd{Cmd: "quit"}, &ok)
			_ = w.in.Close()
			done := make(chan struct{})
			go func() { _ = w.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = w.cmd.Process.Kill()
				<-done
			}
		}()
	}
	wg.Wait()
}

// warmOne opens and closes one socket, so the server has run every code path once
// before its memory is measured.
func warmOne(ctx context.Context, cfg *config) error {
	rc, err := newRedis(cfg.redis)
	if err != nil {
		return err
	}
	tickets, err := issueTickets(ctx, rc, 1, "warm-")
	rc.Close()
	if err != nil {
		return err
	}
	d, err := newDialer(cfg.url, "", cfg.connectTimeout, cfg.wire)
	if err != nil {
		return err
	}
	c, err := d.connect(ctx, tickets[0], cfg.connectTimeout)
	if err != nil {
		return fmt.Errorf("warm-up socket: %w", err)
	}
	closeNormally(c)
	return nil
}

// openPool starts the workers and records connection failures in the cell.
func openPool(ctx context.Context, cfg *config, cell *result.Cell, lifetime time.Duration) (pool, int, error) {
	p, err := startWorkers(ctx, cfg, lifetime)
	if err != nil {
		return nil, 0, err
	}
	n, errs := p.open()
	if n < cfg.sockets {
		cell.Notes = append(cell.Notes, fmt.Sprintf("%d of %d sockets opened; failures: %v", n, cfg.sockets, errs))
	}
	if n == 0 {
		p.stop()
		return nil, 0, errors.New("no socket opened")
	}
	return p, n, nil
}

// w2 measures the fan-out of group messages to cfg.sockets subscribers: a burst of
// cfg.burst messages sent back to back, then cfg.pacedRate messages per second for
// cfg.pacedDuration, each by a publisher process (bench/peer/publish.py) that stamps
// every message with its send time.
func w2(ctx context.Context, cfg *config, cell *result.Cell) error {
	if cfg.publisher == "" || cfg.publisherBackend == "" {
		return errors.New("-publisher and -publisher-backend are required")
	}
	p, n, err := openPool(ctx, cfg, cell, cfg.deadline)
	if err != nil {
		return err
	}
	defer p.stop()
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
	for _, ph := range phases {
		if ph.count <= 0 {
			continue
		}
		m, cpu, window, err := fanout(ctx, cfg, p, n, ph.base, ph.count, ph.rate, phaseHooks{})
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		cell.Phases = append(cell.Phases, result.Phase{Name: ph.name, WindowS: window, Metrics: m, CPU: cpu})
		if m["closed"] > 0 {
			cell.Notes = append(cell.Notes, fmt.Sprintf("%s: %.0f sockets were closed by the server (or lost) so far", ph.name, m["closed"]))
		}
		if m["loss"] > 0 {
			cell.Notes = append(cell.Notes, fmt.Sprintf("%s: %.0f of %.0f deliveries lost (%.2f %%)", ph.name, m["loss"], m["expected"], m["loss_pct"]))
		}
	}
	return ctx.Err()
}

// publisherOut is publish.py's result line.
type publisherOut struct {
	Sent    int     `json:"sent"`
	FirstTS int64   `json:"first_ts"`
	LastTS  int64   `json:"last_ts"`
	CPUS    float64 `json:"cpu_s"`
	WallS   float64 `json:"wall_s"`
}

// phaseHooks are fanout's optional callbacks: beforeGo runs once the publisher is
// ready, just before the clock starts; afterDrain once every delivery came (or the
// drain gave up), before the CPU meter stops.
type phaseHooks struct {
	beforeGo, afterDrain func()
}

// fanout runs one publishing phase and waits until every subscriber has every message,
// or until no delivery came for cfg.drainIdle. subs counts the reading subscribers.
func fanout(ctx context.Context, cfg *config, p pool, subs int, base int64, count int, rate float64, hooks phaseHooks) (map[string]float64, []result.Proc, float64, error) {
	if _, err := p.each(workerCmd{Cmd: "reset", Base: base, Count: int64(count)}); err != nil {
		return nil, nil, 0, err
	}
	expected := int64(subs) * int64(count)
	var meter *cpuMeter
	pub, err := publish(ctx, cfg, base, count, rate, func() {
		if hooks.beforeGo != nil {
			hooks.beforeGo()
		}
		meter = newCPUMeter(cfg.tracked(p.pids()...))
	})
	if err != nil {
		return nil, nil, 0, err
	}
	// Drain: bounded by cfg.drainIdle without progress, and by the command's deadline.
	last, lastChange := int64(-1), time.Now()
	for {
		st, err := p.stats(false)
		if err != nil {
			return nil, nil, 0, err
		}
		if st.Received >= expected {
			break
		}
		if st.Received != last {
			last, lastChange = st.Received, time.Now()
		} else if time.Since(lastChange) > cfg.drainIdle {
			break
		}
		if ctx.Err() != nil {
			return nil, nil, 0, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if hooks.afterDrain != nil {
		hooks.afterDrain()
	}
	window, cpu := meter.stop(result.Proc{Role: "publisher", Core: "1", CPUSeconds: pub.CPUS})
	st, err := p.stats(true)
	if err != nil {
		return nil, nil, 0, err
	}
	q, max := st.Hist.Quantiles(0.5, 0.99)
	span := float64(st.LastRecv-pub.FirstTS) / 1e9
	m := map[string]float64{
		"subscribers":      float64(subs),
		"messages":         float64(pub.Sent),
		"expected":         float64(expected),
		"delivered":        float64(st.Received),
		"loss":             float64(expected - st.Received),
		"loss_pct":         100 * ratio(float64(expected-st.Received), float64(expected)),
		"dup":              float64(st.Dup),
		"stray":            float64(st.Stray),
		"deliveries_per_s": ratio(float64(st.Received), span),
		"span_s":           span,
		"publish_s":        pub.WallS,
		"p50_ms":           q[0],
		"p99_ms":           q[1],
		"max_ms":           max,
		"closed":           float64(st.Closed),
	}
	return m, cpu, window, nil
}

// publish runs publish.py for one phase. onReady runs once the publisher has started
// and connected, just before it is told to go, so that Python's start-up stays out of
// the measured window.
func publish(ctx context.Context, cfg *config, base int64, count int, rate float64, onReady func()) (publisherOut, error) {
	return publishTo(ctx, cfg, "bench", cfg.textBytes, base, count, rate, onReady)
}

// publishTo is publish to any group, with texts of textBytes.
func publishTo(ctx context.Context, cfg *config, group string, textBytes int, base int64, count int, rate float64, onReady func()) (publisherOut, error) {
	var out publisherOut
	ctx, cancel := context.WithTimeout(ctx, time.Duration(float64(count)/max(rate, 1)*float64(time.Second))+2*time.Minute)
	defer cancel()
	args := []string{"--backend", cfg.publisherBackend, "--redis", cfg.redis, "--count", itoa(count),
		"--rate", strconv.FormatFloat(rate, 'f', -1, 64), "--seq-base", strconv.FormatInt(base, 10),
		"--text-bytes", itoa(textBytes), "--group", group, "--wait-go"}
	var cmd *exec.Cmd
	if kind, ok := strings.CutPrefix(cfg.publisherBackend, "go-"); ok {
		// W5 on a Redis Cluster, which channels_redis cannot use: Canal's own layer
		// publishes, with publish.py's protocol (publisher.go).
		self, err := os.Executable()
		if err != nil {
			return out, err
		}
		args[1] = kind
		cmd = exec.CommandContext(ctx, self, append([]string{"publish", "--cluster", strings.Join(cfg.layerCluster, ",")}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, cfg.python, append([]string{cfg.publisher}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Dir(cfg.publisher), "DJANGO_SETTINGS_MODULE=benchpeer.settings")
	}
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return out, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return out, err
	}
	if err := cmd.Start(); err != nil {
		return out, err
	}
	defer func() { _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.Contains(sc.Text(), "ready") {
		_ = in.Close()
		return out, fmt.Errorf("publisher did not start: %q", sc.Text())
	}
	onReady()
	if _, err := io.WriteString(in, "go\n"); err != nil {
		return out, err
	}
	if !sc.Scan() {
		_ = in.Close()
		return out, errors.New("publisher exited without a result")
	}
	_ = in.Close()
	if err := json.Unmarshal(sc.Bytes(), &out); err != nil {
		return out, fmt.Errorf("publisher result %q: %w", sc.Text(), err)
	}
	if out.Sent != count {
		return out, fmt.Errorf("publisher sent %d of %d", out.Sent, count)
	}
	return out, nil
}

// w3 measures the server's memory per idle authenticated socket: RSS after one warm-up
// socket, then with cfg.sockets open and greeted, after cfg.settle and after cfg.hold
// with the server's pings flowing (the workers answer them).
func w3(ctx context.Context, cfg *config, cell *result.Cell) error {
	return held(ctx, cfg, cell, "idle", 0)
}

// soak is w3 held for cfg.hold with the RSS sampled every cfg.sample: the memory
// should stay flat.
func soak(ctx context.Context, cfg *config, cell *result.Cell) error {
	return held(ctx, cfg, cell, "soak", cfg.sample)
}

func held(ctx context.Context, cfg *config, cell *result.Cell, name string, sample time.Duration) error {
	if err := warmOne(ctx, cfg); err != nil {
		return err
	}
	sleep(ctx, 500*time.Millisecond)
	before, err := rssKiB(cfg.serverPID)
	if err != nil {
		return err
	}
	p, n, err := openPool(ctx, cfg, cell, cfg.deadline)
	if err != nil {
		return err
	}
	defer p.stop()
	sleep(ctx, cfg.settle)
	if _, err := p.each(workerCmd{Cmd: "reset"}); err != nil {
		return err
	}
	idle, err := rssKiB(cfg.serverPID)
	if err != nil {
		return err
	}
	meter := newCPUMeter(cfg.tracked(p.pids()...))
	peak := idle
	var samples []string
	if sample > 0 {
		end := time.Now().Add(cfg.hold)
		for time.Now().Before(end) && ctx.Err() == nil {
			sleep(ctx, min(sample, time.Until(end)))
			if r, err := rssKiB(cfg.serverPID); err == nil {
				peak = max(peak, r)
				samples = append(samples, strconv.FormatFloat(float64(r)/1024, 'f', 1, 64))
			}
		}
	} else {
		sleep(ctx, cfg.hold)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	st, err := p.stats(false)
	if err != nil {
		return err
	}
	end, err := rssKiB(cfg.serverPID)
	if err != nil {
		return err
	}
	peak = max(peak, end)
	window, cpu := meter.stop()
	heldWithPings := min(st.Open, st.Pinged)
	m := map[string]float64{
		"sockets":             float64(n),
		"held":                float64(st.Open),
		"held_with_pings":     float64(heldWithPings),
		"pings_per_socket":    ratio(float64(st.Pings), float64(n)),
		"closed":              float64(st.Closed),
		"rss_before_mib":      float64(before) / 1024,
		"rss_idle_mib":        float64(idle) / 1024,
		"rss_end_mib":         float64(end) / 1024,
		"rss_peak_mib":        float64(peak) / 1024,
		"kib_per_socket":      ratio(float64(end-before), float64(n)),
		"kib_per_socket_idle": ratio(float64(idle-before), float64(n)),
		"rss_growth_pct":      100 * ratio(float64(end-idle), float64(idle)),
		"hold_s":              cfg.hold.Seconds(),
	}
	cell.Phases = append(cell.Phases, result.Phase{Name: name, WindowS: window, Metrics: m, CPU: cpu})
	if len(samples) > 0 {
		cell.Notes = append(cell.Notes, "RSS samples (MiB): "+strings.Join(samples, " "))
	}
	return nil
}
