package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/internal/ratelog"
)

// Defaults of a zero Options.
const (
	DefaultDrainTimeout = 10 * time.Second
	DefaultMaxBackoff   = 5 * time.Second
	// minBackoff is the first wait after a failed Receive; it doubles up to MaxBackoff.
	minBackoff = 50 * time.Millisecond
)

// Options configures a Worker. The zero value is valid.
type Options struct {
	// Concurrency is the most messages the worker holds at once, being handled or
	// just received: a hard cap on running handlers. Each channel's receive loop
	// takes a slot before it waits for a message, so with several channels one
	// channel's handlers get at most Concurrency - (channels - 1) slots while the
	// others are idle. Default: GOMAXPROCS, or the number of channels when larger;
	// a value below the number of channels is an error.
	Concurrency int
	// DrainTimeout is how long Run waits, once its context ends, for running
	// handlers to finish (default 10 s). Then their contexts are cancelled and Run
	// returns ErrDrainTimeout.
	DrainTimeout time.Duration
	// MaxBackoff bounds the wait between failed receives (Redis down): 50 ms,
	// doubling up to it (default 5 s). The worker resumes at the first receive that
	// succeeds.
	MaxBackoff time.Duration
	// Logger receives handler errors and panics, unhandled types and receive
	// errors, each kind at most once a second per channel and type (default
	// slog.Default()). Messages' contents are never logged.
	Logger *slog.Logger
}

// Stats counts what a Worker did. Every message received ends in exactly one of
// Handled, Failed, Panics or Unhandled (or is still running, InFlight).
type Stats struct {
	// Received: messages taken from the layer.
	Received uint64
	// Handled: the handler returned nil.
	Handled uint64
	// Failed: the handler returned an error (other than those of Unhandled).
	Failed uint64
	// Panics: the handler panicked; the worker recovered and goes on.
	Panics uint64
	// Unhandled: dropped because their type has no handler (ErrNoHandler) or they
	// have no valid type (canal.ErrInvalidMessage).
	Unhandled uint64
	// ReceiveErrors: failed calls to the layer's Receive (Redis unreachable), each
	// followed by a backoff.
	ReceiveErrors uint64
	// InFlight: handlers running now.
	InFlight int
}

// Worker receives messages from named channels of a layer and runs their handlers:
// the Go side of Channels' runworker. Create it with New, run it with Run. Stats is
// safe to call at any time.
type Worker struct {
	layer       canal.Layer
	routes      Channels
	concurrency int
	drain       time.Duration
	maxBackoff  time.Duration
	log         *slog.Logger

	started atomic.Bool

	received, handled, failed, panics, unhandled, receiveErrors atomic.Uint64
	inFlight                                                    atomic.Int64

	failLog, panicLog, unhandledLog, receiveLog ratelog.Limiter
}

// New returns a worker that receives from the channels of routes on layer. Any
// canal.Layer works: layers.NewRedis to share channels with Django and other
// processes, layers.NewMemory within one process. routes is copied.
func New(layer canal.Layer, routes Channels, opts Options) (*Worker, error) {
	if layer == nil {
		return nil, errors.New("worker: nil layer")
	}
	if err := routes.validate(); err != nil {
		return nil, err
	}
	w := &Worker{
		layer:       layer,
		routes:      make(Channels, len(routes)),
		concurrency: opts.Concurrency,
		drain:       opts.DrainTimeout,
		maxBackoff:  opts.MaxBackoff,
		log:         opts.Logger,
	}
	for name, h := range routes {
		w.routes[name] = h
	}
	switch {
	case opts.Concurrency < 0:
		return nil, fmt.Errorf("worker: Concurrency %d is negative", opts.Concurrency)
	case opts.Concurrency == 0:
		w.concurrency = max(runtime.GOMAXPROCS(0), len(routes))
	case opts.Concurrency < len(routes):
		return nil, fmt.Errorf("worker: Concurrency %d is below the %d channels (each needs a slot to wait in)",
			opts.Concurrency, len(routes))
	}
	switch {
	case opts.DrainTimeout < 0:
		return nil, fmt.Errorf("worker: DrainTimeout %v is negative", opts.DrainTimeout)
	case opts.DrainTimeout == 0:
		w.drain = DefaultDrainTimeout
	}
	switch {
	case opts.MaxBackoff < 0:
		return nil, fmt.Errorf("worker: MaxBackoff %v is negative", opts.MaxBackoff)
	case opts.MaxBackoff == 0:
		w.maxBackoff = DefaultMaxBackoff
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	return w, nil
}

// Concurrency returns the cap on messages held at once (Options.Concurrency after
// defaults).
func (w *Worker) Concurrency() int { return w.concurrency }

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Received:      w.received.Load(),
		Handled:       w.handled.Load(),
		Failed:        w.failed.Load(),
		Panics:        w.panics.Load(),
		Unhandled:     w.unhandled.Load(),
		ReceiveErrors: w.receiveErrors.Load(),
		InFlight:      int(w.inFlight.Load()),
	}
}

// Run receives and handles messages until ctx ends, then stops receiving and waits
// for running handlers, at most Options.DrainTimeout. Handlers' contexts carry
// ctx's values but not its cancellation: they are cancelled only when the drain
// timeout passes.
//
// Run returns nil after a complete drain; ErrDrainTimeout (wrapped, with the
// number of handlers left running, which Run does not wait for: they end when
// they honour their cancelled context) when the timeout passed; an error wrapping
// canal.ErrLayerClosed, after draining, when the layer was closed under it; and
// ErrStarted when called a second time. Receive errors (canal.ErrUnavailable) do
// not end Run: it backs off and receives again.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	recvCtx, stopReceiving := context.WithCancel(ctx)
	defer stopReceiving()

	r := &run{w: w, recvCtx: recvCtx, handlerCtx: handlerCtx}
	if n := w.concurrency - len(w.routes); n > 0 {
		r.shared = make(chan struct{}, n)
	}
	var receivers sync.WaitGroup
	for name, h := range w.routes {
		receivers.Go(func() {
			if err := r.receive(name, h); err != nil {
				r.fatalOnce.Do(func() { r.fatal = err })
				stopReceiving()
			}
		})
	}
	receivers.Wait()

	drained := make(chan struct{})
	go func() {
		r.handlers.Wait()
		close(drained)
	}()
	timer := time.NewTimer(w.drain)
	defer timer.Stop()
	select {
	case <-drained:
		return r.fatal
	case <-timer.C:
		cancelHandlers()
		err := fmt.Errorf("%w: %d after %v; their contexts are cancelled", ErrDrainTimeout, w.inFlight.Load(), w.drain)
		return errors.Join(err, r.fatal)
	}
}

// run is the state of one Run.
type run struct {
	w          *Worker
	recvCtx    context.Context // ends when Run stops receiving
	handlerCtx context.Context // ends at the drain timeout
	// shared holds a token per message held beyond each channel's own one: the
	// channels' own slots plus shared make the Concurrency cap. nil when there are
	// none to share.
	shared    chan struct{}
	handlers  sync.WaitGroup
	fatalOnce sync.Once
	fatal     error
}

// receive is one channel's loop: take a slot, receive a message, hand it to a
// handler goroutine that gives the slot back. Waiting for the slot before Receive
// means a busy worker leaves messages in the layer, for other workers to take. The
// channel's own slot is taken first, shared ones after, so that a busy channel
// never takes an idle one's last slot. It returns nil when Run stops receiving, an
// error when the layer is closed.
func (r *run) receive(channel string, h Handler) error {
	w := r.w
	own := make(chan struct{}, 1)
	var backoff time.Duration
	var failingSince time.Time
	for {
		var slot chan struct{}
		select {
		case own <- struct{}{}:
			slot = own
		default:
			select {
			case own <- struct{}{}:
				slot = own
			case r.shared <- struct{}{}:
				slot = r.shared
			case <-r.recvCtx.Done():
				return nil
			}
		}
		// A layer may return a message it was handed as ctx ended (with a nil
		// error) rather than lose it: that one is handled like any other.
		msg, err := w.layer.Receive(r.recvCtx, channel)
		if err != nil {
			<-slot
			switch {
			case r.recvCtx.Err() != nil:
				return nil
			case errors.Is(err, canal.ErrLayerClosed):
				return fmt.Errorf("worker: receive on %q: %w", channel, err)
			}
			n := w.receiveErrors.Add(1)
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			backoff = min(max(2*backoff, minBackoff), w.maxBackoff)
			w.receiveLog.Log(w.log, slog.LevelWarn, channel, "worker: receive failed; retrying",
				"channel", channel, "err", err, "retry_in", backoff, "receive_errors_total", n)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.recvCtx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		if !failingSince.IsZero() {
			w.log.Info("worker: receiving again", "channel", channel, "down", time.Since(failingSince).Round(time.Millisecond))
			failingSince, backoff = time.Time{}, 0
		}
		w.received.Add(1)
		w.inFlight.Add(1)
		r.handlers.Go(func() {
			defer func() { <-slot }()
			defer w.inFlight.Add(-1)
			w.handle(r.handlerCtx, channel, h, msg)
		})
	}
}

// handle runs h on msg, recovering a panic, and counts and logs the outcome.
func (w *Worker) handle(ctx context.Context, channel string, h Handler, msg canal.Message) {
	typ := msg.Type()
	defer func() {
		if v := recover(); v != nil {
			n := w.panics.Add(1)
			w.panicLog.Log(w.log, slog.LevelError, channel+" "+typ, "worker: handler panicked; message dropped",
				"channel", channel, "type", typ, "panic", fmt.Sprint(v), "stack", string(debug.Stack()), "panics_total", n)
		}
	}()
	err := h.Handle(ctx, msg)
	switch {
	case err == nil:
		w.handled.Add(1)
	case errors.Is(err, ErrNoHandler), errors.Is(err, canal.ErrInvalidMessage):
		n := w.unhandled.Add(1)
		w.unhandledLog.Log(w.log, slog.LevelWarn, channel+" "+typ, "worker: no handler for message; dropped",
			"channel", channel, "type", typ, "err", err, "unhandled_total", n)
	default:
		n := w.failed.Add(1)
		w.failLog.Log(w.log, slog.LevelError, channel+" "+typ, "worker: handler failed",
			"channel", channel, "type", typ, "err", err, "failed_total", n)
	}
}
