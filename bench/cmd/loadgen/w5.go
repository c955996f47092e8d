package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal/bench/internal/result"
)

// w5 is W2 scaled out (bench/README.md "W5"): cfg.sockets split evenly over the
// server processes cfg.urls, all in group "bench", on one Redis or a Redis Cluster
// (cfg.redisAddrs, every master). Each phase (burst, paced) records W2's figures and,
// from the Redis side, the servers' CPU (/proc/PID/stat), the calls and time INFO
// commandstats counts and the bytes INFO stats counts, before and after the phase;
// and each server's RSS after it.
func w5(ctx context.Context, cfg *config, cell *result.Cell) error {
	if len(cfg.urls) == 0 {
		return errors.New("-urls is required")
	}
	if len(cfg.redisAddrs) == 0 || len(cfg.redisAddrs) != len(cfg.redisPIDs) {
		return fmt.Errorf("%d -redis-addrs for %d -redis-pids: want one address per process", len(cfg.redisAddrs), len(cfg.redisPIDs))
	}
	if cfg.publisher == "" || cfg.publisherBackend == "" {
		return errors.New("-publisher and -publisher-backend are required")
	}
	nodes := make([]rueidis.Client, 0, len(cfg.redisAddrs))
	defer func() {
		for _, c := range nodes {
			c.Close()
		}
	}()
	for _, a := range cfg.redisAddrs {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			return fmt.Errorf("redis %s: %w", a, err)
		}
		nodes = append(nodes, c)
	}
	p, n, err := openPool(ctx, cfg, cell, cfg.deadline)
	if err != nil {
		return err
	}
	defer p.stop()
	sleep(ctx, cfg.settle)
	idle, err := serversRSS(cfg.serverPIDs)
	if err != nil {
		return err
	}
	paced := int(cfg.pacedRate*cfg.pacedDuration.Seconds() + 0.5)
	for _, ph := range []struct {
		name  string
		base  int64
		count int
		rate  float64
	}{
		{"burst", 0, cfg.burst, 0},
		{"paced", 1_000_000, paced, cfg.pacedRate},
	} {
		if ph.count <= 0 {
			continue
		}
		var before, after redisSnap
		var snapErr error
		snap := func(into *redisSnap) func() {
			return func() {
				s, err := snapRedis(ctx, nodes)
				s.redisCPU, s.serverCPU = execSeconds(cfg.redisPIDs), execSeconds(cfg.serverPIDs)
				*into = s
				snapErr = errors.Join(snapErr, err)
			}
		}
		m, cpu, window, err := fanout(ctx, cfg, p, n, ph.base, ph.count, ph.rate, phaseHooks{beforeGo: snap(&before), afterDrain: snap(&after)})
		if err == nil {
			err = snapErr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		rss, err := serversRSS(cfg.serverPIDs)
		if err != nil {
			return err
		}
		w5Metrics(m, before, after, idle, rss, len(cfg.urls))
		cell.Phases = append(cell.Phases, result.Phase{Name: ph.name, WindowS: window, Metrics: m, CPU: cpu})
		if m["loss"] > 0 {
			cell.Notes = append(cell.Notes, fmt.Sprintf("%s: %.0f of %.0f deliveries lost (%.2f %%)", ph.name, m["loss"], m["expected"], m["loss_pct"]))
		}
		if m["closed"] > 0 {
			cell.Notes = append(cell.Notes, fmt.Sprintf("%s: %.0f sockets were closed by the server (or lost) so far", ph.name, m["closed"]))
		}
		cell.Notes = append(cell.Notes, ph.name+": Redis calls per message by command: "+after.sub(before).perMessage(m["messages"]))
	}
	return ctx.Err()
}

// w5Metrics adds the scale-out figures to a fan-out phase's metrics m.
// The CPU figures are the scheduler's (execSeconds), finer than the phase's
// clock-tick CPU entries.
func w5Metrics(m map[string]float64, before, after redisSnap, idle, rss []int64, procs int) {
	msgs := m["messages"]
	d := after.sub(before)
	var serverCPU, redisCPU, redisMax float64
	for i, s := range after.serverCPU {
		serverCPU += s - before.serverCPU[i]
	}
	for i, s := range after.redisCPU {
		redisCPU += s - before.redisCPU[i]
		redisMax = max(redisMax, s-before.redisCPU[i])
	}
	m["processes"] = float64(procs)
	m["sockets_per_process"] = ratio(m["subscribers"], float64(procs))
	m["server_cpu_s"] = serverCPU
	m["server_us_per_delivery"] = 1e6 * ratio(serverCPU, m["delivered"])
	m["redis_cpu_s"] = redisCPU
	m["redis_cpu_us_per_msg"] = 1e6 * ratio(redisCPU, msgs)
	m["redis_max_node_cpu_us_per_msg"] = 1e6 * ratio(redisMax, msgs)
	m["redis_calls_per_msg"] = ratio(float64(d.calls()), msgs)
	m["redis_cmd_us_per_msg"] = ratio(float64(d.usec()), msgs)
	m["redis_bytes_per_msg"] = ratio(float64(d.netIn+d.netOut), msgs)
	m["redis_max_node_calls_per_msg"] = ratio(float64(d.maxNodeCalls), msgs)
	var tot, top, idleTot int64
	for i, r := range rss {
		tot += r
		top = max(top, r)
		idleTot += idle[i]
	}
	m["rss_mib_total"] = float64(tot) / 1024
	m["rss_mib_max"] = float64(top) / 1024
	m["rss_idle_mib_total"] = float64(idleTot) / 1024
	m["kib_per_socket"] = ratio(float64(tot), m["subscribers"])
}

// execSeconds returns each process's CPU time in seconds, summed over its threads
// from the scheduler's se.sum_exec_runtime (/proc/PID/task/TID/sched, nanosecond
// resolution), or from /proc/PID/stat's clock ticks where the kernel has no sched
// files.
func execSeconds(pids []int) []float64 {
	out := make([]float64, len(pids))
	for i, pid := range pids {
		out[i] = schedSeconds(pid)
		if out[i] < 0 {
			out[i], _ = cpuSeconds(pid)
		}
	}
	return out
}

// schedSeconds is execSeconds for one process, or -1.
func schedSeconds(pid int) float64 {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/sched", pid))
	if err != nil || len(files) == 0 {
		return -1
	}
	var ms float64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "se.sum_exec_runtime" {
				x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return -1
				}
				ms += x
				found = true
				break
			}
		}
		if !found {
			return -1
		}
	}
	return ms / 1000
}

func serversRSS(pids []int) ([]int64, error) {
	out := make([]int64, len(pids))
	for i, pid := range pids {
		r, err := rssKiB(pid)
		if err != nil {
			return nil, fmt.Errorf("server %d: %w", pid, err)
		}
		out[i] = r
	}
	return out, nil
}

// redisSnap sums INFO commandstats and the network counters of INFO stats over every
// Redis node of the layer. The INFO calls themselves (this measurement's own) are left
// out; maxNodeCalls, in a difference, is the busiest node's share.
type redisSnap struct {
	cmds          map[string][2]int64 // command → calls, usec
	redisCPU      []float64           // per node, execSeconds
	serverCPU     []float64           // per server, execSeconds
	perNode       []int64             // calls per node
	netIn, netOut int64
	maxNodeCalls  int64
}

func snapRedis(ctx context.Context, nodes []rueidis.Client) (redisSnap, error) {
	s := redisSnap{cmds: map[string][2]int64{}}
	for _, c := range nodes {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		text, err := c.Do(cctx, c.B().Arbitrary("INFO").Args("commandstats", "stats").Build()).ToString()
		cancel()
		if err != nil {
			return s, fmt.Errorf("INFO: %w", err)
		}
		var nodeCalls int64
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch {
			case k == "total_net_input_bytes":
				n, _ := strconv.ParseInt(v, 10, 64)
				s.netIn += n
			case k == "total_net_output_bytes":
				n, _ := strconv.ParseInt(v, 10, 64)
				s.netOut += n
			case strings.HasPrefix(k, "cmdstat_"):
				name := strings.TrimPrefix(k, "cmdstat_")
				if name == "info" {
					continue
				}
				calls, usec := infoField(v, "calls"), infoField(v, "usec")
				cur := s.cmds[name]
				s.cmds[name] = [2]int64{cur[0] + calls, cur[1] + usec}
				nodeCalls += calls
			}
		}
		s.perNode = append(s.perNode, nodeCalls)
	}
	return s, nil
}

// infoField reads key=N out of "calls=3,usec=12,…".
func infoField(v, key string) int64 {
	for _, f := range strings.Split(v, ",") {
		if k, n, ok := strings.Cut(f, "="); ok && k == key {
			x, _ := strconv.ParseInt(n, 10, 64)
			return x
		}
	}
	return 0
}

// sub returns s − b, per command and per node.
func (s redisSnap) sub(b redisSnap) redisSnap {
	d := redisSnap{cmds: map[string][2]int64{}, netIn: s.netIn - b.netIn, netOut: s.netOut - b.netOut}
	for k, v := range s.cmds {
		o := b.cmds[k]
		if v[0]-o[0] > 0 {
			d.cmds[k] = [2]int64{v[0] - o[0], v[1] - o[1]}
		}
	}
	for i, n := range s.perNode {
		if i < len(b.perNode) {
			d.maxNodeCalls = max(d.maxNodeCalls, n-b.perNode[i])
		}
	}
	return d
}

func (s redisSnap) calls() (n int64) {
	for _, v := range s.cmds {
		n += v[0]
	}
	return n
}

func (s redisSnap) usec() (n int64) {
	for _, v := range s.cmds {
		n += v[1]
	}
	return n
}

// perMessage lists the commands by calls per message, most first.
func (s redisSnap) perMessage(msgs float64) string {
	names := make([]string, 0, len(s.cmds))
	for k := range s.cmds {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := s.cmds[names[i]][0], s.cmds[names[j]][0]
		return a > b || a == b && names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %.2f", k, ratio(float64(s.cmds[k][0]), msgs))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
