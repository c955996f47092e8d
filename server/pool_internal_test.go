package server

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkersRunEveryTaskInOrder: with nothing blocking, tasks start in the order
// queued, all of them run, and close leaves no goroutine behind (TestMain checks).
func TestWorkersRunEveryTaskInOrder(t *testing.T) {
	t.Parallel()
	w := newWorkers(1 << 20)
	w.keep, w.stall = 1, time.Hour // one goroutine, never grown: start order is run order
	const n = 10000
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		w.run(func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	w.close()
	for i, v := range order {
		if v != i {
			t.Fatalf("task %d ran in position %d", v, i)
		}
	}
	waitIdle(t, w)
}

// TestWorkersGrowPastBlockedTasks: tasks blocked for good (a peer that stopped reading,
// a handler waiting on a database) hold only their own goroutines: a task queued behind
// them still starts, within a few stall periods.
func TestWorkersGrowPastBlockedTasks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		blocked int
	}{
		{"as many as kept", 2},
		{"many more than kept", 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorkers(1 << 20)
			w.keep = 2
			release := make(chan struct{})
			var entered atomic.Int32
			for range tt.blocked {
				w.run(func() { entered.Add(1); <-release })
			}
			ran := make(chan time.Time, 1)
			queuedAt := time.Now()
			w.run(func() { ran <- time.Now() })
			select {
			case at := <-ran:
				// Doubling from 2 reaches 300 blocked goroutines in 8 periods (40 ms).
				t.Logf("started after %v", at.Sub(queuedAt))
			case <-time.After(5 * time.Second):
				t.Fatalf("a task behind %d blocked ones did not start (%d entered)", tt.blocked, entered.Load())
			}
			// Twenty more periods with nothing finishing: the pool must not keep doubling.
			time.Sleep(20 * w.stall)
			if n := w.count(); n > tt.blocked+1+w.keep {
				t.Fatalf("%d goroutines for %d tasks", n, tt.blocked+1)
			}
			close(release)
			w.close()
			waitIdle(t, w)
			if got := entered.Load(); got != int32(tt.blocked) {
				t.Fatalf("%d of %d blocked tasks ran", got, tt.blocked)
			}
		})
	}
}

// TestWorkersRetireExtras: goroutines added for blocked tasks stay while work keeps
// coming and are retired once the queue has been empty for the linger period.
func TestWorkersRetireExtras(t *testing.T) {
	t.Parallel()
	w := newWorkers(1 << 20)
	w.keep, w.linger = 2, 100*time.Millisecond
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(20)
	for range 20 {
		w.run(func() { <-release; wg.Done() })
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.count() < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines for 20 blocked tasks after 5 s", w.count())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := w.count(); n < 20 {
		t.Fatalf("%d goroutines right after the work: retired before the linger period", n)
	}
	for w.count() > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 5 s after the work, want the 2 kept", w.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.close()
	waitIdle(t, w)
}

func (w *workers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

// TestWorkersGrowthBounded: a storm of slow tasks (thousands of sockets closing at once,
// each leaving its groups in Redis) never gets more goroutines than tasks: growth is
// bounded by the tasks waiting, however little finishes per period.
func TestWorkersGrowthBounded(t *testing.T) {
	t.Parallel()
	w := newWorkers(1 << 20)
	w.keep = 2
	const tasks = 2000
	var wg sync.WaitGroup
	wg.Add(tasks)
	var peak atomic.Int64
	for range tasks {
		w.run(func() {
			defer wg.Done()
			peak.Store(max(peak.Load(), int64(w.count())))
			time.Sleep(2 * time.Millisecond)
		})
	}
	wg.Wait()
	w.close()
	waitIdle(t, w)
	if p := peak.Load(); p > tasks+int64(w.keep) {
		t.Fatalf("%d goroutines for %d tasks", p, tasks)
	}
	t.Logf("peak %d goroutines for %d tasks of 2 ms", peak.Load(), tasks)
}

// TestWorkersAfterClose: run after close still runs the task.
func TestWorkersAfterClose(t *testing.T) {
	t.Parallel()
	w := newWorkers(1 << 20)
	w.close()
	done := make(chan struct{})
	w.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a task run after close never ran")
	}
}

// waitIdle waits for every goroutine of a closed pool to exit.
func waitIdle(t *testing.T, w *workers) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		running, watching := w.running, w.watching
		w.mu.Unlock()
		if running == 0 && !watching {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still running after close (watchdog running: %v)", running, watching)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWorkersHardLimit: a flood with every goroutine blocked (handlers stuck on a
// database) never gets more than the pool's limit, however long it lasts and however
// busy the CPU; the tasks beyond it wait their turn, in order, and all run once the
// blocked ones return.
func TestWorkersHardLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		limit, tasks int
	}{
		{"limit below warm goroutines", 1, 50},
		{"small limit", 8, 2000},
		{"default limit", 256, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorkers(tt.limit)
			release := make(chan struct{})
			var ran atomic.Int32
			var order []int
			var mu sync.Mutex
			for i := range tt.tasks {
				w.run(func() {
					<-release
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					ran.Add(1)
				})
			}
			// Forty stall periods with nothing finishing: growth stops at the limit.
			time.Sleep(40 * w.stall)
			if running, peak := w.size(); running > tt.limit || peak > tt.limit {
				t.Fatalf("%d goroutines running (peak %d), limit %d", running, peak, tt.limit)
			}
			close(release)
			deadline := time.Now().Add(10 * time.Second)
			for int(ran.Load()) < tt.tasks {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d tasks ran", ran.Load(), tt.tasks)
				}
				time.Sleep(time.Millisecond)
			}
			if _, peak := w.size(); peak > tt.limit {
				t.Fatalf("peak %d goroutines, limit %d", peak, tt.limit)
			}
			if tt.limit == 1 {
				for i, v := range order {
					if v != i {
						t.Fatalf("one goroutine ran task %d in place %d", v, i)
					}
				}
			}
			w.close()
			waitIdle(t, w)
		})
	}
}

// TestWorkersGrowthBoundedBusyCPU: when the CPU is saturated, goroutines the pool
// spawned may not run for several stall periods; they already stand for a waiting task
// each, so the pool must not spawn again for the same tasks (it used to double each
// period, to thousands of goroutines for a few hundred tasks).
func TestWorkersGrowthBoundedBusyCPU(t *testing.T) {
	w := newWorkers(1 << 20)
	w.keep = 1
	stop := make(chan struct{})
	var hogs sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		hogs.Add(1)
		go func() { // CPU hogs: the scheduler runs new goroutines late
			defer hogs.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e5; i++ {
				}
			}
		}()
	}
	const tasks = 300
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(tasks)
	for range tasks {
		w.run(func() { defer wg.Done(); <-release }) // everything blocked
	}
	time.Sleep(300 * time.Millisecond) // sixty stall periods
	_, peak := w.size()
	close(release)
	wg.Wait()
	close(stop)
	hogs.Wait()
	w.close()
	waitIdle(t, w)
	if peak > tasks+w.keep {
		t.Fatalf("%d goroutines for %d blocked tasks on a busy CPU; want at most %d", peak, tasks, tasks+w.keep)
	}
	t.Logf("peak %d goroutines for %d blocked tasks", peak, tasks)
}
