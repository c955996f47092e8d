package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal/internal/ratelog"
)

// Check is one condition of readiness, such as Redis answering a PING.
type Check struct {
	// Name identifies the check in /readyz's answer and in logs: short and safe to
	// show ("redis"), never a URL or an address.
	Name string
	// Func returns nil when the condition holds. It gets a context that ends after
	// HealthOptions.Timeout and should return by then.
	Func func(ctx context.Context) error
}

// HealthOptions configure NewHealth. The zero value serves a /readyz with no checks
// (ready while not draining).
type HealthOptions struct {
	// Checks all must pass for /readyz to answer 200.
	Checks []Check
	// Timeout bounds each check (default 2 s). A check still running past it fails
	// as "timeout".
	Timeout time.Duration
	// Cache is how long a round of checks answers /readyz before the next round runs
	// (default 1 s). Requests during a round wait for it rather than start their
	// own, so however often /readyz is asked, the checks run at most once per Cache,
	// one round at a time.
	Cache time.Duration
	// Logger receives failed checks with their error (at most one line per check a
	// second). Default slog.Default().
	Logger *slog.Logger
}

// Health serves liveness and readiness for orchestrators and load balancers:
// Live for "/healthz" (the process is up and serving HTTP) and Ready for "/readyz"
// (every check passes and the server is not draining). Both are plain net/http
// handlers; on Fiber, mount them with adaptor.HTTPHandler.
//
// A failed /readyz answers 503 with a short text naming the failed checks and
// whether each timed out or failed ("not ready: redis: timeout"): check errors go
// to the log only, since they may name hosts or carry credentials.
//
// Concurrency: safe for concurrent use. At most one round of checks runs at a time,
// and each check runs at most once at a time (one that ignores its context's end is
// not started again until it returns), so a flood of /readyz requests costs no
// goroutines and no load on what is checked.
type Health struct {
	opts     HealthOptions
	draining atomic.Bool
	logs     ratelog.Limiter
	busy     []atomic.Bool // per check: still running from an earlier round

	mu      sync.Mutex
	last    []string      // failures of the last round, "name: timeout" or "name: failed"
	lastAt  time.Time     // when the last round ended; zero before the first
	results []checkResult // the last round's, per check, for Metrics.Health
	running chan struct{}
}

// checkResult is one check's outcome in a round.
type checkResult struct {
	ok  bool
	dur time.Duration
}

// NewHealth validates opts: every check needs a distinct non-empty name and a Func.
func NewHealth(opts HealthOptions) (*Health, error) {
	if opts.Timeout < 0 || opts.Cache < 0 {
		return nil, fmt.Errorf("%w: Timeout (%v) and Cache (%v) must not be negative", ErrOptions, opts.Timeout, opts.Cache)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Cache == 0 {
		opts.Cache = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	seen := make(map[string]bool, len(opts.Checks))
	for i, c := range opts.Checks {
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("%w: check %d has no Name", ErrOptions, i)
		case strings.ContainsAny(c.Name, "\r\n,:"):
			return nil, fmt.Errorf("%w: check name %q holds a line break, comma or colon", ErrOptions, c.Name)
		case seen[c.Name]:
			return nil, fmt.Errorf("%w: two checks are named %q", ErrOptions, c.Name)
		case c.Func == nil:
			return nil, fmt.Errorf("%w: check %q has no Func", ErrOptions, c.Name)
		}
		seen[c.Name] = true
	}
	opts.Checks = append([]Check(nil), opts.Checks...)
	return &Health{opts: opts, busy: make([]atomic.Bool, len(opts.Checks))}, nil
}

// Live answers 200 "ok" to every request: the process runs and serves HTTP. It
// checks nothing else, so that a Redis outage makes the server unready, not killed.
func (h *Health) Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		answer(w, http.StatusOK, "ok")
	})
}

// Ready answers 200 "ok" when every check passed in the latest round and Drain was
// not called, and 503 with the reason otherwise.
func (h *Health) Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.draining.Load() {
			answer(w, http.StatusServiceUnavailable, "not ready: draining")
			return
		}
		failed, err := h.Check(r.Context())
		switch {
		case err != nil:
			answer(w, http.StatusServiceUnavailable, "not ready: request ended")
		case len(failed) > 0:
			answer(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(failed, ", "))
		default:
			answer(w, http.StatusOK, "ok")
		}
	})
}

// Drain makes Ready answer 503 "draining" from now on. Call it when shutdown starts,
// a little before server.Shutdown, so that load balancers stop sending new clients
// while the open sockets are closed.
func (h *Health) Drain() { h.draining.Store(true) }

// Check returns the failures of the latest round of checks ("redis: timeout"), none
// when all passed, running a round if the last one is older than Cache. It returns
// ctx's error if ctx ends while it waits for a round.
func (h *Health) Check(ctx context.Context) ([]string, error) {
	h.mu.Lock()
	if h.running == nil && !h.lastAt.IsZero() && time.Since(h.lastAt) < h.opts.Cache {
		failed := h.last
		h.mu.Unlock()
		return failed, nil
	}
	done, mine := h.running, false
	if done == nil {
		done, mine = make(chan struct{}), true
		h.running = done
	}
	h.mu.Unlock()

	if mine {
		failed, results := h.round()
		h.mu.Lock()
		h.last, h.lastAt, h.results, h.running = failed, time.Now(), results, nil
		h.mu.Unlock()
		close(done)
		return failed, nil
	}
	select {
	case <-done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.last, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// round runs every check at once, each within Timeout, and returns the failures in
// the checks' order. It does not depend on any request's context: a client that
// hangs up does not fail the round for the others waiting on it.
func (h *Health) round() ([]string, []checkResult) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout)
	defer cancel()
	type done struct {
		err error
		dur time.Duration
	}
	results := make([]chan done, len(h.opts.Checks))
	for i, c := range h.opts.Checks {
		results[i] = make(chan done, 1)
		if !h.busy[i].CompareAndSwap(false, true) {
			results[i] <- done{err: context.DeadlineExceeded} // the last run has not returned yet
			continue
		}
		go func() {
			defer h.busy[i].Store(false)
			start := time.Now()
			defer func() {
				if v := recover(); v != nil {
					results[i] <- done{fmt.Errorf("panic: %v", v), time.Since(start)}
				}
			}()
			err := c.Func(ctx)
			results[i] <- done{err, time.Since(start)}
		}()
	}
	var failed []string
	outcomes := make([]checkResult, len(h.opts.Checks))
	for i, c := range h.opts.Checks {
		var d done
		select {
		case d = <-results[i]:
		case <-ctx.Done():
			d = done{ctx.Err(), h.opts.Timeout}
		}
		outcomes[i] = checkResult{ok: d.err == nil, dur: d.dur}
		if d.err == nil {
			continue
		}
		why := "failed"
		if errors.Is(d.err, context.DeadlineExceeded) {
			why = "timeout"
		}
		failed = append(failed, c.Name+": "+why)
		h.logs.Log(h.opts.Logger, slog.LevelWarn, c.Name, "canal: readiness check failed", "check", c.Name, "err", d.err)
	}
	return failed, outcomes
}

// snapshot returns the last round's results (nil before the first) and whether the
// server is ready by them.
func (h *Health) snapshot() ([]checkResult, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.results, !h.lastAt.IsZero() && len(h.last) == 0 && !h.draining.Load()
}

func answer(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text + "\n"))
}
