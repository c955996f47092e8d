// Package debugstats is the Go bench servers' window for the stress mode
// (bench/run.sh --stress): their goroutine count, its peak (sampled every 10 ms by
// the server itself, so that short spikes between the harness's reads count), and
// the connections they ended, by close code, for the designated non-reading users
// ("stall-…" usernames) apart from the others. It is served on a loopback-only
// address given with -debug-addr, and never started in the normal benchmark.
//
//	GET /debug/stats          {"goroutines", "peak_goroutines", "stalled": {…}, "others": {…}}
//	GET /debug/stats?reset=1  the same, then the peak restarts from the current count
package debugstats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StallPrefix starts the username of every client the stress mode makes stop reading
// after its handshake. The servers put those users in StallGroup as well as in the
// benchmark's group, so that a stream meant to overflow their buffers reaches them
// and no reader.
const (
	StallPrefix = "stall-"
	StallGroup  = "bench-stall"
)

// Stalled reports whether username is one of the designated non-readers.
func Stalled(username string) bool { return strings.HasPrefix(username, StallPrefix) }

// Closes counts ended connections by close code, with the first and last time.
type Closes struct {
	ByCode  map[string]int64 `json:"by_code"`
	Total   int64            `json:"total"`
	FirstNS int64            `json:"first_ns,omitempty"` // Unix ns
	LastNS  int64            `json:"last_ns,omitempty"`
	// First1013NS and Last1013NS bound the 1013 ("try again later", slow consumer) closes.
	First1013NS int64 `json:"first_1013_ns,omitempty"`
	Last1013NS  int64 `json:"last_1013_ns,omitempty"`
}

// Snapshot is the /debug/stats answer.
type Snapshot struct {
	Goroutines     int    `json:"goroutines"`
	PeakGoroutines int64  `json:"peak_goroutines"`
	Stalled        Closes `json:"stalled"`
	Others         Closes `json:"others"`
}

// Tracker holds the counts. The zero value is not usable; call New.
type Tracker struct {
	peak    atomic.Int64
	mu      sync.Mutex
	stalled Closes
	others  Closes
}

// New returns a tracker; Start runs its sampler and endpoint.
func New() *Tracker {
	t := &Tracker{stalled: Closes{ByCode: map[string]int64{}}, others: Closes{ByCode: map[string]int64{}}}
	t.peak.Store(int64(runtime.NumGoroutine()))
	return t
}

func (t *Tracker) sample() {
	n := int64(runtime.NumGoroutine())
	for {
		p := t.peak.Load()
		if n <= p || t.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// Closed records that the connection of username ended with code.
func (t *Tracker) Closed(username string, code int) {
	now := time.Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &t.others
	if Stalled(username) {
		c = &t.stalled
	}
	c.ByCode[strconv.Itoa(code)]++
	c.Total++
	if c.FirstNS == 0 {
		c.FirstNS = now
	}
	c.LastNS = now
	if code == 1013 {
		if c.First1013NS == 0 {
			c.First1013NS = now
		}
		c.Last1013NS = now
	}
}

func clone(c Closes) Closes {
	out := c
	out.ByCode = make(map[string]int64, len(c.ByCode))
	for k, v := range c.ByCode {
		out.ByCode[k] = v
	}
	return out
}

// Snapshot returns the counts; reset restarts the goroutine peak from now.
func (t *Tracker) Snapshot(reset bool) Snapshot {
	t.sample()
	t.mu.Lock()
	s := Snapshot{Goroutines: runtime.NumGoroutine(), PeakGoroutines: t.peak.Load(),
		Stalled: clone(t.stalled), Others: clone(t.others)}
	t.mu.Unlock()
	if reset {
		t.peak.Store(int64(runtime.NumGoroutine()))
	}
	return s
}

// Start serves /debug/stats on addr, which must be a loopback address, and samples
// the goroutine count every 10 ms until ctx ends. An empty addr starts nothing.
func (t *Tracker) Start(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-debug-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-debug-addr %q: not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t.Snapshot(r.URL.Query().Get("reset") == "1"))
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = hs.Close()
				return
			case <-tick.C:
				t.sample()
			}
		}
	}()
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "debugstats: %v\n", err)
		}
	}()
	return nil
}
