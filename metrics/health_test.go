package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/metrics"
)

func probe(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code, rec.Body.String()
}

// TestReadyRedis: a real Redis PING as the check; /readyz follows Redis going away,
// with a reason that names the check and never the error (which holds the address).
func TestReadyRedis(t *testing.T) {
	rd := canaltest.StartRedis(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rd.Addr()}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	logs := &canaltest.LogBuffer{}
	h, err := metrics.NewHealth(metrics.HealthOptions{
		Checks: []metrics.Check{{Name: "redis", Func: func(ctx context.Context) error {
			return client.Do(ctx, client.B().Ping().Build()).Error()
		}}},
		Timeout: 500 * time.Millisecond,
		Cache:   time.Nanosecond, // a round per request
		Logger:  logs.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.New(metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Health(h)
	ms := httptest.NewServer(m.Handler())
	defer ms.Close()
	if fams := scrape(t, ms.URL); fams["canal_ready"].GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Fatal("ready before any check ran")
	}
	if code, body := probe(t, h.Ready()); code != 200 || body != "ok\n" {
		t.Fatalf("ready with Redis up: %d %q", code, body)
	}
	readyMetrics(t, ms.URL, 1)
	if code, body := probe(t, h.Live()); code != 200 || body != "ok\n" {
		t.Fatalf("live: %d %q", code, body)
	}
	if err := client.Do(context.Background(), client.B().Shutdown().Nosave().Build()).Error(); err == nil {
		t.Log("SHUTDOWN answered") // Redis usually just drops the connection
	}
	var code int
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = probe(t, h.Ready()); code == 503 {
			break
		}
	}
	if code != 503 || (body != "not ready: redis: failed\n" && body != "not ready: redis: timeout\n") {
		t.Fatalf("ready with Redis down: %d %q", code, body)
	}
	if strings.Contains(body, rd.Addr()) {
		t.Fatalf("the answer names Redis' address: %q", body)
	}
	if code, _ := probe(t, h.Live()); code != 200 {
		t.Fatalf("live with Redis down: %d", code)
	}
	readyMetrics(t, ms.URL, 0)
	if len(logs.Lines("readiness check failed")) == 0 {
		t.Fatalf("the failure was not logged: %s", logs)
	}
}

// TestReadyChecks: outcomes, timeouts, panics, draining, and a flood of requests
// that costs one round of checks.
func TestReadyChecks(t *testing.T) {
	errDown := errors.New("down at 10.0.0.1:6379 password=secret")
	tests := []struct {
		name   string
		checks []metrics.Check
		code   int
		body   string
	}{
		{"no checks", nil, 200, "ok\n"},
		{"all pass", []metrics.Check{{Name: "a", Func: func(context.Context) error { return nil }},
			{Name: "b", Func: func(context.Context) error { return nil }}}, 200, "ok\n"},
		{"one fails", []metrics.Check{{Name: "a", Func: func(context.Context) error { return nil }},
			{Name: "db", Func: func(context.Context) error { return errDown }}}, 503, "not ready: db: failed\n"},
		{"timeout", []metrics.Check{{Name: "slow", Func: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}}, 503, "not ready: slow: timeout\n"},
		{"panic", []metrics.Check{{Name: "p", Func: func(context.Context) error { panic("boom") }}}, 503, "not ready: p: failed\n"},
		{"both fail", []metrics.Check{{Name: "x", Func: func(context.Context) error { return errDown }},
			{Name: "y", Func: func(context.Context) error { return context.DeadlineExceeded }}}, 503, "not ready: x: failed, y: timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := metrics.NewHealth(metrics.HealthOptions{Checks: tt.checks, Timeout: 50 * time.Millisecond, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if code, body := probe(t, h.Ready()); code != tt.code || body != tt.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tt.code, tt.body)
			}
			h.Drain()
			if code, body := probe(t, h.Ready()); code != 503 || body != "not ready: draining\n" {
				t.Fatalf("draining: %d %q", code, body)
			}
		})
	}
}

// TestReadyFlood: concurrent requests share one round; within Cache no new round
// runs.
func TestReadyFlood(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	h, err := metrics.NewHealth(metrics.HealthOptions{
		Checks: []metrics.Check{{Name: "redis", Func: func(ctx context.Context) error {
			runs.Add(1)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}},
		Timeout: 5 * time.Second,
		Cache:   time.Hour,
		Logger:  quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Ready())
	defer srv.Close()
	const n = 50
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); runs.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the other requests arrive and wait on the round
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a request got %d", c)
		}
	}
	if code, _ := probe(t, h.Ready()); code != 200 {
		t.Fatalf("cached answer %d", code)
	}
	if r := runs.Load(); r != 1 {
		t.Fatalf("%d rounds for %d+1 requests, want 1", r, n)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestNewHealthErrors(t *testing.T) {
	ok := func(context.Context) error { return nil }
	for name, opts := range map[string]metrics.HealthOptions{
		"no name":        {Checks: []metrics.Check{{Func: ok}}},
		"no func":        {Checks: []metrics.Check{{Name: "a"}}},
		"duplicate":      {Checks: []metrics.Check{{Name: "a", Func: ok}, {Name: "a", Func: ok}}},
		"line break":     {Checks: []metrics.Check{{Name: "a\nb", Func: ok}}},
		"negative":       {Timeout: -1},
		"negative cache": {Cache: -time.Second},
	} {
		if _, err := metrics.NewHealth(opts); !errors.Is(err, metrics.ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
	}
	if _, err := metrics.New(metrics.Options{MaxRoutes: -1}); !errors.Is(err, metrics.ErrOptions) {
		t.Errorf("New(MaxRoutes -1): %v", err)
	}
}

// readyMetrics checks canal_ready and the redis check's series: up as want, a
// duration within the check's timeout.
func readyMetrics(t *testing.T, url string, want float64) {
	t.Helper()
	fams := scrape(t, url)
	ready := fams["canal_ready"].GetMetric()
	up := fams["canal_ready_check_up"].GetMetric()
	dur := fams["canal_ready_check_duration_seconds"].GetMetric()
	if len(ready) != 1 || len(up) != 1 || len(dur) != 1 {
		t.Fatalf("series: %v %v %v", ready, up, dur)
	}
	if ready[0].GetGauge().GetValue() != want || up[0].GetGauge().GetValue() != want {
		t.Fatalf("canal_ready %v, check up %v; want %v", ready[0], up[0], want)
	}
	if l := up[0].GetLabel(); len(l) != 1 || l[0].GetName() != "check" || l[0].GetValue() != "redis" {
		t.Fatalf("labels %v", l)
	}
	if d := dur[0].GetGauge().GetValue(); d <= 0 || d > 0.5 {
		t.Fatalf("check duration %v s, want within the 0.5 s timeout", d)
	}
}

// TestReadyStuckCheck: a check that ignores its context's end fails as a timeout and
// is not started again until it returns, so it holds one goroutine, not one per
// round.
func TestReadyStuckCheck(t *testing.T) {
	var runs atomic.Int32
	release, returned := make(chan struct{}), make(chan struct{}, 4)
	h, err := metrics.NewHealth(metrics.HealthOptions{
		Checks: []metrics.Check{{Name: "stuck", Func: func(context.Context) error {
			runs.Add(1)
			<-release
			select {
			case returned <- struct{}{}:
			default:
			}
			return nil
		}}},
		Timeout: 20 * time.Millisecond,
		Cache:   time.Nanosecond,
		Logger:  quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		failed, err := h.Check(context.Background())
		if err != nil || len(failed) != 1 || failed[0] != "stuck: timeout" {
			t.Fatalf("%v %v, want [stuck: timeout]", failed, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("started %d times while stuck, want 1", n)
	}
	close(release)
	<-returned
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if failed, _ := h.Check(context.Background()); len(failed) == 0 {
			if n := runs.Load(); n < 2 {
				t.Fatalf("passed after %d runs", n)
			}
			return
		}
	}
	t.Fatal("never ready after the check returned")
}
