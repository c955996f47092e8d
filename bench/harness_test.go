// Package bench holds the benchmark harness (see README.md); this test keeps it from
// rotting: it runs the one command in smoke mode against real processes (redis-server,
// Canal, Daphne with both channels_redis backends, the baseline) and checks that the
// report has every row, with numbers for every server.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canal-rt/canal/bench/internal/result"
)

// smokeBudget bounds the measured part of the smoke run (the cells, not the build):
// the harness must stay quick enough to run in CI.
const smokeBudget = 2 * time.Minute

type summary struct {
	Mode       string   `json:"mode"`
	CanalLayer string   `json:"canal_layer"`
	Servers    []string `json:"servers"`
	Rows       []struct {
		Key     string              `json:"key"`
		Label   string              `json:"label"`
		Values  map[string]*float64 `json:"values"`
		Display map[string]string   `json:"display"`
	} `json:"rows"`
}

type meta struct {
	W2Sizes []int `json:"w2_sizes"`
	W3Sizes []int `json:"w3_sizes"`
}

func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts every server in turn for about a minute; skipped with -short")
	}
	out := t.TempDir()
	// Generous: a cold Go build cache adds about a minute to the smoke run itself.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"run.sh", "--smoke", "--out", out}
	// CANAL_BENCH_SMOKE_FLAGS adds run.sh flags, e.g. --without-redis-layer to check
	// the "n/a (Redis layer pending)" path.
	args = append(args, strings.Fields(os.Getenv("CANAL_BENCH_SMOKE_FLAGS"))...)
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout run.sh gets SIGTERM and stops what it started (its trap); the group
	// kill below catches anything left if it cannot.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we created; ESRCH when all gone
	}
	if err != nil {
		t.Fatalf("bench/run.sh --smoke: %v (after %v)\n%s", err, time.Since(start).Round(time.Second), tail(log.String(), 6000))
	}
	t.Logf("bench/run.sh --smoke took %v", time.Since(start).Round(time.Second))

	if m := regexp.MustCompile(`bench: cells took (\d+) s`).FindStringSubmatch(log.String()); m == nil {
		t.Errorf("run.sh did not report the time its cells took")
	} else if s, _ := strconv.Atoi(m[1]); time.Duration(s)*time.Second > smokeBudget {
		t.Errorf("smoke cells took %d s, over the %v budget", s, smokeBudget)
	}

	var sum summary
	readJSON(t, filepath.Join(out, "summary.json"), &sum)
	var mt meta
	readJSON(t, filepath.Join(out, "meta.json"), &mt)
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Mode != "smoke" {
		t.Errorf("mode %q, want smoke", sum.Mode)
	}
	if fmt.Sprint(sum.Servers) != fmt.Sprint(result.Servers) {
		t.Errorf("servers %v, want %v", sum.Servers, result.Servers)
	}
	if sum.CanalLayer != "redis" && sum.CanalLayer != "pending" {
		t.Errorf("canal_layer %q, want redis or pending", sum.CanalLayer)
	}

	want := []string{"w1.rate", "w1.p99"}
	for _, n := range mt.W2Sizes {
		for _, k := range []string{"burst.rate", "burst.p50", "burst.p99", "burst.loss", "paced.p50", "paced.p99", "paced.loss"} {
			want = append(want, fmt.Sprintf("w2.%d.%s", n, k))
		}
	}
	for _, n := range mt.W3Sizes {
		want = append(want, fmt.Sprintf("w3.%d.kib", n), fmt.Sprintf("w3.%d.held", n))
	}
	want = append(want, "w4.rate", "w4.p99")
	if len(mt.W2Sizes) == 0 || len(mt.W3Sizes) == 0 {
		t.Fatalf("meta.json has no W2 or W3 sizes: %+v", mt)
	}
	got := map[string]int{}
	for i, r := range sum.Rows {
		got[r.Key] = i
	}
	for _, k := range want {
		i, ok := got[k]
		if !ok {
			t.Errorf("row %s missing from the report", k)
			continue
		}
		r := sum.Rows[i]
		if !bytes.Contains(report, []byte("| "+r.Label+" |")) {
			t.Errorf("row %q missing from report.md", r.Label)
		}
		for _, s := range result.Servers {
			v, disp := r.Values[s], r.Display[s]
			if s == result.Canal && strings.HasPrefix(k, "w2.") && sum.CanalLayer != "redis" {
				// Without the Redis layer Canal cannot hear Django's group_send: the
				// row must say so explicitly instead of showing a number.
				if v != nil || disp != result.LayerPending {
					t.Errorf("%s, canal: got %v %q, want no value and %q", k, v, disp, result.LayerPending)
				}
				continue
			}
			if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0 {
				t.Errorf("%s, %s: no number (shows %q)", k, s, disp)
				continue
			}
			if disp == "" || disp[0] < '0' || disp[0] > '9' {
				t.Errorf("%s, %s: display %q does not start with a number", k, s, disp)
			}
			if strings.HasSuffix(k, ".held") {
				// Every server holds this many sockets with ease: fewer means the
				// harness (workers, pings) is broken. Daphne pings on its own clock:
				// on a loaded machine (the rest of the suite runs beside this test) a
				// few of its sockets may not have seen a ping within the 2.5 s hold,
				// so the peers get a 10 % margin; the Go servers get none.
				n, _ := strconv.Atoi(strings.Split(k, ".")[1])
				want := n
				if strings.HasPrefix(s, "channels") {
					want = n * 9 / 10
				}
				if int(*v) < want || int(*v) > n {
					t.Errorf("%s, %s: %v sockets held with pings, want %d (at least %d)", k, s, *v, n, want)
				}
			}
		}
	}
	if sum.CanalLayer != "redis" && !bytes.Contains(report, []byte(result.LayerPending)) {
		t.Errorf("report.md does not say %q", result.LayerPending)
	}
	if t.Failed() {
		t.Logf("report.md:\n%s", report)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
