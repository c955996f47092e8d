package layers_test

// Canal's Redis layers against channels_redis, in the same run, on the same private
// redis-server: BenchmarkGroupSendCompare times one group message from group_send
// until every member has it, on each side, for 10, 1,000 and 10,000 members in one
// process, with the core and the Pub/Sub backends. The Python side is
// testdata/bench_groupsend.py on Debian's /usr/bin/python3 (channels_redis from apt).
//
//	go test ./layers -run '^$' -bench GroupSendCompare -benchtime 20x
//
// Metrics per sub-benchmark: ns/op is Canal's mean, py-ns/op channels_redis' mean over
// its rounds, and ratio is py-ns/op ÷ ns/op (above 1: Canal is faster). Both sides
// work the same way: one layer holds the N members and sends, a round starts when
// group_send is called and ends when the last member has the message, and rounds
// follow each other at once. The Go side runs on all cores (GOMAXPROCS), the Python
// side on one event loop, as a Daphne worker does.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// benchPython is Debian's interpreter, which has channels and channels_redis.
const benchPython = "/usr/bin/python3"

// pyGroupSend is what testdata/bench_groupsend.py prints.
type pyGroupSend struct {
	Backend  string            `json:"backend"`
	Members  int               `json:"members"`
	Rounds   int               `json:"rounds"`
	MeanNS   float64           `json:"mean_ns"`
	MedianNS float64           `json:"median_ns"`
	MinNS    float64           `json:"min_ns"`
	SetupS   float64           `json:"setup_s"`
	Versions map[string]string `json:"versions"`
}

// runPyGroupSend runs the Python side for n members, bounded, and returns its result.
func runPyGroupSend(b *testing.B, url, backend string, n, rounds int) pyGroupSend {
	b.Helper()
	// Setup costs about 0.2 ms per member on a loaded machine, a round about 0.03 ms
	// per member; the budget is what the rounds may take once three are done.
	budget := 10 * time.Second
	limit := 60*time.Second + time.Duration(n)*10*time.Millisecond + budget
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, benchPython, filepath.Join("testdata", "bench_groupsend.py"),
		"--url", url, "--backend", backend, "--members", fmt.Sprint(n),
		"--repeat", fmt.Sprint(rounds), "--budget", fmt.Sprint(budget.Seconds()),
		"--prefix", fmt.Sprintf("py%s%d", backend, n), "--timeout", "30")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("channels_redis side (%s, %d members): %v (bound %v)\n%s", backend, n, err, limit, stderr.Bytes())
	}
	var res pyGroupSend
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Rounds == 0 {
		b.Fatalf("channels_redis side: output %q: %v\n%s", stdout.Bytes(), err, stderr.Bytes())
	}
	return res
}

// requirePython fails the benchmark, naming the Debian packages, when Debian's Python
// cannot import channels_redis.
func requirePython(b *testing.B) {
	b.Helper()
	if _, err := os.Stat(benchPython); err != nil {
		b.Fatalf("%s not found: install python3-channels-redis (scripts/test.sh does)", benchPython)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, benchPython, "-c", "import channels, channels_redis, msgpack").CombinedOutput(); err != nil {
		b.Fatalf("%s cannot import channels_redis (%v): apt-get install python3-channels-redis\n%s", benchPython, err, out)
	}
}

// arrivals counts deliveries and signals when a target is reached.
type arrivals struct {
	n, target atomic.Int64
	reached   chan struct{}
}

func (a *arrivals) deliver(canal.Message) bool {
	if a.n.Add(1) == a.target.Load() {
		select {
		case a.reached <- struct{}{}:
		default:
		}
	}
	return true
}

// await waits, bounded, until n deliveries in all have been made.
func (a *arrivals) await(b *testing.B, n int64) {
	a.target.Store(n)
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for a.n.Load() < n {
		select {
		case <-a.reached:
		case <-timeout.C:
			b.Fatalf("delivered %d of %d", a.n.Load(), n)
		}
	}
}

func BenchmarkGroupSendCompare(b *testing.B) {
	requirePython(b)
	srv := canaltest.StartRedis(b)
	for _, be := range redisBackends {
		for _, n := range []int{10, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/members=%d", be.name, n), func(b *testing.B) {
				canalNS := benchCanalGroupSend(b, be, srv.URL(), n)
				// Rounds on the Python side: as many as Go's, within its budget.
				py := runPyGroupSend(b, srv.URL(), be.name, n, min(max(b.N, 3), 1000))
				b.ReportMetric(py.MeanNS, "py-ns/op")
				b.ReportMetric(py.MeanNS/canalNS, "ratio")
				b.Logf("channels_redis %s (Python %s): %d rounds, mean %.3f ms, median %.3f ms; Canal mean %.3f ms",
					py.Versions["channels_redis"], py.Versions["python"], py.Rounds, py.MeanNS/1e6, py.MedianNS/1e6, canalNS/1e6)
			})
		}
	}
}

// benchCanalGroupSend runs the Go side: n attached channels of one layer in one group,
// and the layer's GroupSend until all n have the message. It returns the mean ns/op.
func benchCanalGroupSend(b *testing.B, be redisBackend, url string, n int) float64 {
	ctx := context.Background()
	prefix := fmt.Sprintf("go%s%d", be.name, n)
	layer, _, err := be.open(ctx, url, prefix, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = layer.Flush(cctx)
		_ = layer.Close(cctx)
	}()

	got := &arrivals{reached: make(chan struct{}, 1)}
	names := make([]string, n)
	for i := range names {
		name, _, err := layer.Attach(ctx, "", got.deliver)
		if err != nil {
			b.Fatal(err)
		}
		names[i] = name
	}
	// Join 32 at a time: 10,000 round trips one by one would be most of the setup.
	var wg sync.WaitGroup
	var joinErr atomic.Pointer[error]
	sem := make(chan struct{}, 32)
	for _, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := layer.GroupAdd(ctx, "bench", name); err != nil {
				joinErr.Store(&err)
			}
		})
	}
	wg.Wait()
	if p := joinErr.Load(); p != nil {
		b.Fatal(*p)
	}

	message := canal.Message{"type": "bench.message", "text": "hello"}
	// A warm-up round, not counted, as on the Python side.
	if err := layer.GroupSend(ctx, "bench", message); err != nil {
		b.Fatal(err)
	}
	got.await(b, int64(n))
	sent := int64(1)
	b.ReportAllocs()
	for b.Loop() {
		if err := layer.GroupSend(ctx, "bench", message); err != nil {
			b.Fatal(err)
		}
		sent++
		got.await(b, sent*int64(n))
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}
