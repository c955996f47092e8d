package server

import (
	"runtime"
	"sync"
	"time"
)

// workers runs connections' tasks from one FIFO queue on a few long-lived goroutines,
// never more than max. A server has two: one for session calls, which may block (a
// handler waiting on a database), and one for writes, which never block (see sock).
//
// Why a queue and not a goroutine per task: a group message to 1,000 idle sockets is
// 1,000 tiny write tasks. New goroutines start with a small stack and grow it on the
// way down to the write system call; profiles of that fan-out showed a fifth of the
// server's CPU in goroutine creation and stack copying. A few warm goroutines taking
// tasks in turn pay neither, and keep per-task cost at a mutex and a slice slot.
//
// Why it cannot deadlock or let one connection hold up the rest: a task may block (a
// session handler waiting on a database, a write to a peer that stopped reading, up to
// the write timeout). A watchdog runs while tasks are queued. When a task has waited a
// whole stall period without starting, it adds goroutines: as many as are running when
// no task at all finished in that period (everything is blocked), else keep more
// (the tasks are slow, or the CPU is busy and more goroutines would not help much),
// never more than there are tasks waiting, and never more than max in all: past max,
// tasks wait their turn (the server gets slower, not bigger). The queue itself is
// bounded by construction: a connection has at most one task of each kind queued.
// Blocked tasks therefore delay the others by about one stall period. The extra
// goroutines stay while work keeps coming (handlers that wait on a database need them
// again soon) and are retired once the queue has been empty for a linger period.
//
// Concurrency: safe for concurrent use. close makes idle goroutines exit; run may still
// be called afterwards and then starts a goroutine for the task.
type workers struct {
	mu       sync.Mutex
	wake     sync.Cond // signalled when a task is queued or on close
	queue    []func()
	head     int    // queue[head:] waits
	running  int    // goroutines alive
	idle     int    // goroutines waiting on wake
	starting int    // goroutines spawned that have not yet taken the lock
	keep     int    // goroutines that stay when the queue is empty
	max      int    // goroutines ever alive at once (closed pools aside)
	peak     int    // most goroutines alive at once so far
	queued   uint64 // tasks ever queued
	started  uint64 // tasks ever taken from the queue
	finished uint64 // tasks ever completed
	retire   int    // goroutines asked to exit
	watching bool
	closed   bool
	quit     chan struct{} // closed by close: stops the watchdog
	stall    time.Duration
	linger   time.Duration
}

// stallPeriod is how long queued tasks wait behind blocked ones before the pool grows;
// lingerPeriod is how long the queue stays empty before extra goroutines are retired.
const (
	stallPeriod  = 5 * time.Millisecond
	lingerPeriod = time.Second
)

// newWorkers returns a pool that keeps max(2, GOMAXPROCS) goroutines warm (fewer if
// limit is lower) and grows past them, when tasks block, up to limit.
func newWorkers(limit int) *workers {
	keep := max(2, runtime.GOMAXPROCS(0))
	w := &workers{keep: min(keep, max(limit, 1)), max: max(limit, 1), stall: stallPeriod, linger: lingerPeriod, quit: make(chan struct{})}
	w.wake.L = &w.mu
	return w
}

// size returns the goroutines alive now and the most ever alive at once.
func (w *workers) size() (running, peak int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running, w.peak
}

// run queues task. It never blocks.
func (w *workers) run(task func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		go task()
		return
	}
	w.queue = append(w.queue, task)
	w.queued++
	switch {
	case w.idle > 0:
		w.wake.Signal()
	case w.running < w.keep:
		w.spawnLocked(1)
	}
	if !w.watching && w.max > w.keep {
		w.watching = true
		go w.watch()
	}
}

func (w *workers) spawnLocked(n int) {
	w.starting += n
	for range n {
		w.running++
		w.peak = max(w.peak, w.running)
		go w.loop()
	}
}

func (w *workers) loop() {
	w.mu.Lock()
	w.starting--
	for {
		for w.head < len(w.queue) {
			task := w.queue[w.head]
			w.queue[w.head] = nil
			w.head++
			w.started++
			if w.head == len(w.queue) {
				w.queue, w.head = w.queue[:0], 0
			}
			w.mu.Unlock()
			task()
			w.mu.Lock()
			w.finished++
		}
		if w.closed || w.retire > 0 {
			w.retire = max(w.retire-1, 0)
			w.running--
			w.mu.Unlock()
			return
		}
		w.idle++
		w.wake.Wait()
		w.idle--
	}
}

// watch grows the pool while queued tasks wait, retires the extra goroutines once the
// queue has been empty for the linger period, and ends when there is nothing left to
// watch.
func (w *workers) watch() {
	t := time.NewTicker(w.stall)
	defer t.Stop()
	w.mu.Lock()
	queued, finished := w.queued, w.finished
	w.mu.Unlock()
	busy := time.Now() // the last tick that saw tasks waiting
	for {
		select {
		case <-t.C:
		case <-w.quit:
		}
		w.mu.Lock()
		empty := w.head == len(w.queue)
		if w.closed || (empty && w.running <= w.keep) {
			w.watching = false
			w.mu.Unlock()
			return
		}
		if empty {
			if time.Since(busy) >= w.linger && w.running > w.keep {
				w.retire = w.running - w.keep
				w.wake.Broadcast()
			}
			queued, finished = w.queued, w.finished
			w.mu.Unlock()
			continue
		}
		busy = time.Now()
		w.retire = 0
		if w.started < queued { // a task queued a period ago has not started
			n := w.keep
			if w.finished == finished {
				n = max(w.running, 1)
			}
			// Never more new goroutines than waiting tasks no goroutine is on its way to:
			// when nothing finishes because the CPU or a lock is saturated (thousands of
			// sockets closing at once), more goroutines cannot help, and goroutines
			// spawned a period ago that the scheduler has not run yet (or idle ones it has
			// not woken) already stand for a waiting task each.
			uncovered := len(w.queue) - w.head - w.starting - w.idle
			w.spawnLocked(max(0, min(n, uncovered, w.max-w.running)))
		}
		queued, finished = w.queued, w.finished
		w.mu.Unlock()
	}
}

func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.quit)
		w.wake.Broadcast()
	}
}
