package server

import "sync"

// workers runs connections' short tasks (session calls, writes) on a few long-lived
// goroutines instead of a new goroutine per task: a new goroutine starts with a small
// stack and pays to grow it on every task (JSON decoding grows it, and profiles showed
// a tenth of the echo path's CPU in stack copying), while a reused one keeps its stack.
//
// At most maxIdle goroutines wait for work; past that, a finished goroutine exits.
// Concurrency: safe for concurrent use. close makes waiting goroutines exit; run may
// still be called afterwards and then starts a goroutine for the task.
type workers struct {
	tasks   chan func()
	quit    chan struct{}
	mu      sync.Mutex
	idle    int
	maxIdle int
	closed  bool
}

func newWorkers(maxIdle int) *workers {
	return &workers{tasks: make(chan func()), quit: make(chan struct{}), maxIdle: maxIdle}
}

// run runs task on an idle goroutine, or a new one.
func (w *workers) run(task func()) {
	select {
	case w.tasks <- task:
	default:
		go w.loop(task)
	}
}

func (w *workers) loop(task func()) {
	for {
		task()
		w.mu.Lock()
		if w.closed || w.idle >= w.maxIdle {
			w.mu.Unlock()
			return
		}
		w.idle++
		w.mu.Unlock()
		select {
		case task = <-w.tasks:
			w.mu.Lock()
			w.idle--
			w.mu.Unlock()
		case <-w.quit:
			return
		}
	}
}

func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
}
