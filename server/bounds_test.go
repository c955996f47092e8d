package server_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// drain reads want frames from c into a slice, in the background.
func drain(t *testing.T, c *canaltest.Communicator, want int) <-chan []canal.Frame {
	t.Helper()
	return drainCounted(t, c, want, new(atomic.Int64))
}

// drainCounted is drain that also counts the frames read so far in n.
func drainCounted(t *testing.T, c *canaltest.Communicator, want int, n *atomic.Int64) <-chan []canal.Frame {
	t.Helper()
	out := make(chan []canal.Frame, 1)
	go func() {
		var got []canal.Frame
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for len(got) < want {
			f, err := c.Receive(ctx)
			if err != nil {
				break
			}
			got = append(got, f)
			n.Add(1)
		}
		out <- got
	}()
	return out
}

// TestBusyHookKeepsItsClient: a client that reads promptly keeps its connection and
// gets every event, in order, while its consumer's hook is busy and EventQueue events
// pile up behind it. A slow hook is not a slow client (it once cost the client a 1013
// and every queued frame).
func TestBusyHookKeepsItsClient(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"ready frames", "events"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			entered, release := make(chan struct{}), make(chan struct{})
			p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
				close(entered)
				<-release
				return c.Send(canal.Text("hook done"))
			}
			p.event = func(_ context.Context, c canal.Conn, m canal.Message) error {
				return c.Send(canal.Text(m.String("n")))
			}
			o := fastOptions()
			o.SendQueue = 16 // far fewer than the events: the writer must keep up, not the queue
			s := canaltest.NewServer(t, p, o)
			c := mustDial(t, s, "/", canaltest.DialOptions{})
			conn := p.lastConn(t)
			if err := c.SendText("block"); err != nil {
				t.Fatal(err)
			}
			<-entered
			const n = 256 // the default EventQueue
			for i := range n {
				m := canal.Message{"type": "room.message", "n": fmt.Sprint(i)}
				var ok bool
				if path == "events" {
					ok = conn.Deliver(m)
				} else {
					ok = conn.(canal.FrameDeliverer).DeliverFrame(m, canal.Text(fmt.Sprint(i)))
				}
				if !ok {
					t.Fatalf("event %d refused with %d queued (EventQueue is %d)", i, i, n)
				}
			}
			if conn.Deliver(canal.Message{"type": "room.message", "n": "over"}) {
				t.Fatal("event past EventQueue taken")
			}
			if got := s.Stats().EventsRefused; got != 1 {
				t.Fatalf("Stats.EventsRefused = %d, want 1", got)
			}
			got := drain(t, c, n+1)
			time.Sleep(200 * time.Millisecond) // the hook stays busy a while
			close(release)
			frames := <-got
			if len(frames) != n+1 || string(frames[0].Data) != "hook done" {
				t.Fatalf("got %d frames (first %q), want %d", len(frames), firstText(frames), n+1)
			}
			for i, f := range frames[1:] {
				if string(f.Data) != fmt.Sprint(i) {
					t.Fatalf("frame %d is %q", i, f.Data)
				}
			}
			if st := s.Stats(); st.SlowConsumers != 0 {
				t.Fatalf("Stats.SlowConsumers = %d for a client that reads", st.SlowConsumers)
			}
		})
	}
}

func firstText(fs []canal.Frame) string {
	if len(fs) == 0 {
		return ""
	}
	return string(fs[0].Data)
}

// TestSendWaitsForTheWriter: a handler that sends far more than SendQueue frames in a
// loop is slowed down to the writer's pace; the client, which reads, gets them all.
func TestSendWaitsForTheWriter(t *testing.T) {
	t.Parallel()
	p := newProbe()
	const n = 5000
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
		for i := range n {
			if err := c.Send(canal.Text(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	}
	o := fastOptions()
	o.SendQueue = 4
	s := canaltest.NewServer(t, p, o)
	c := mustDial(t, s, "/", canaltest.DialOptions{})
	got := drain(t, c, n)
	if err := c.SendText("go"); err != nil {
		t.Fatal(err)
	}
	frames := <-got
	if len(frames) != n {
		t.Fatalf("got %d of %d frames", len(frames), n)
	}
	for i, f := range frames {
		if string(f.Data) != fmt.Sprint(i) {
			t.Fatalf("frame %d is %q", i, f.Data)
		}
	}
}

// TestStalledClientsDoNotHoldUpReaders: in a fan-out, clients that stop reading are
// dropped as slow consumers (Disconnect 1013, counted) once the network has not taken
// SendBuffer bytes; every client that reads gets every frame, in order.
func TestStalledClientsDoNotHoldUpReaders(t *testing.T) {
	t.Parallel()
	p := newProbe()
	o := fastOptions()
	o.SendBuffer = 64 << 10
	o.PingInterval, o.PongTimeout = 10*time.Second, 10*time.Second // silence alone must not end them first
	s := canaltest.NewServer(t, p, o)
	// Bursts of 10 frames of 4 KiB fit in SendBuffer alone, whatever the kernel
	// buffers, and the next burst waits for every reader to have read this one: a
	// reader is never more than one burst behind however slow the machine, so a
	// refusal means the stalled peers held it up, not that the test outran it.
	const readers, stalled, frames, burst = 8, 2, 2000, 10
	var all []canal.FrameDeliverer
	var got []<-chan []canal.Frame
	read := make([]*atomic.Int64, readers)
	for i := range readers + stalled {
		c := mustDial(t, s, "/", canaltest.DialOptions{})
		all = append(all, p.lastConn(t).(canal.FrameDeliverer))
		if i < readers {
			read[i] = new(atomic.Int64)
			got = append(got, drainCounted(t, c, frames, read[i]))
		} // the others are never read past the communicator's small buffer
	}
	payload := bytes.Repeat([]byte("x"), 4<<10)
	msg := canal.Message{"type": "room.message"}
	for i := range frames {
		f := canal.Frame{Data: append(fmt.Appendf(nil, "%04d", i), payload...)}
		for r, fd := range all {
			if !fd.DeliverFrame(msg, f) && r < readers {
				t.Fatalf("frame %d refused for reader %d", i, r)
			}
		}
		if i%burst == burst-1 {
			deadline := time.Now().Add(10 * time.Second)
			for r, n := range read {
				for n.Load() < int64(i+1) {
					if time.Now().After(deadline) {
						t.Fatalf("reader %d has read %d of %d frames: held up", r, n.Load(), i+1)
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
	for r, ch := range got {
		fs := <-ch
		if len(fs) != frames {
			t.Fatalf("reader %d got %d of %d frames", r, len(fs), frames)
		}
		for i, f := range fs {
			if string(f.Data[:4]) != fmt.Sprintf("%04d", i) {
				t.Fatalf("reader %d: frame %d is %q…", r, i, f.Data[:4])
			}
		}
	}
	for range stalled {
		// 1013 once they are SendBuffer bytes, SendQueue frames and EventQueue events
		// behind (or 1006 if their silence outlasts the ping timeout first).
		if code := p.waitDisconnect(t); code != canal.CloseTryAgainLater {
			t.Fatalf("stalled client Disconnect(%d), want 1013", code)
		}
	}
	if n := s.Stats().SlowConsumers; n != stalled {
		t.Fatalf("Stats.SlowConsumers = %d, want %d", n, stalled)
	}
}

// TestBufferedBytesBounded: what the server holds for peers that do not read never
// passes MaxBufferedBytes, whatever SendBuffer allows each.
func TestBufferedBytesBounded(t *testing.T) {
	t.Parallel()
	p := newProbe()
	o := fastOptions()
	o.SendBuffer = 4 << 20
	o.MaxBufferedBytes = 1 << 20
	s := canaltest.NewServer(t, p, o)
	const clients = 4
	var all []canal.FrameDeliverer
	for range clients {
		mustDial(t, s, "/", canaltest.DialOptions{})
		all = append(all, p.lastConn(t).(canal.FrameDeliverer))
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			peak.Store(max(peak.Load(), s.Stats().Buffered))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	big := canal.Frame{Binary: true, Data: make([]byte, 64<<10)}
	msg := canal.Message{"type": "room.message"}
	for range 400 { // 25 MiB per client: more than any loopback socket buffers
		for _, fd := range all {
			fd.DeliverFrame(msg, big)
		}
	}
	for range clients {
		if code := p.waitDisconnect(t); code != canal.CloseTryAgainLater {
			t.Fatalf("Disconnect(%d), want 1013", code)
		}
	}
	close(stop)
	wg.Wait()
	if p := peak.Load(); p > o.MaxBufferedBytes {
		t.Fatalf("%d bytes buffered, MaxBufferedBytes %d", p, o.MaxBufferedBytes)
	}
	if b := s.Stats().Buffered; b != 0 {
		t.Fatalf("%d bytes still counted after every socket closed", b)
	}
}

// TestShutdownWithStalledPeers: at shutdown, sockets whose peers stopped reading do not
// hold up the others' close frames: healthy clients get 1001 at once, and Shutdown
// returns once the stalled ones have had CloseTimeout to answer.
func TestShutdownWithStalledPeers(t *testing.T) {
	t.Parallel()
	p := newProbe()
	o := fastOptions()
	o.PingInterval, o.PongTimeout = 10*time.Second, 10*time.Second
	s := canaltest.NewServer(t, p, o)
	var healthy []*canaltest.Communicator
	for range 5 {
		healthy = append(healthy, mustDial(t, s, "/", canaltest.DialOptions{}))
		p.lastConn(t)
	}
	big := canal.Frame{Binary: true, Data: make([]byte, 64<<10)}
	msg := canal.Message{"type": "room.message"}
	for range 3 {
		mustDial(t, s, "/", canaltest.DialOptions{})
		fd := p.lastConn(t).(canal.FrameDeliverer)
		for range 200 { // 13 MB: past the socket buffers, within SendBuffer and SendQueue
			fd.DeliverFrame(msg, big)
		}
	}
	// Wait until the writers are done and the stalled peers' bytes wait in their socks.
	deadline := time.Now().Add(5 * time.Second)
	for last := int64(-1); ; {
		b := s.Stats().Buffered
		if b > 0 && b == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled peers' bytes never settled (%d buffered)", b)
		}
		last = b
		time.Sleep(100 * time.Millisecond)
	}

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	for i, c := range healthy {
		code, _, err := c.ExpectClose(ctxT(t))
		if err != nil || code != canal.CloseGoingAway {
			t.Fatalf("healthy client %d: close %d, %v", i, code, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("healthy client %d got its 1001 after %v", i, d)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > o.CloseTimeout+2*time.Second {
		t.Fatalf("Shutdown took %v with CloseTimeout %v", d, o.CloseTimeout)
	}
}

// TestSessionWorkersBounded: handlers blocked on something slow (a database) on every
// connection never get more goroutines than SessionWorkers; the calls beyond wait
// their turn and all run once the blocked ones return.
func TestSessionWorkersBounded(t *testing.T) {
	t.Parallel()
	p := newProbe()
	release := make(chan struct{})
	var ran atomic.Int32
	p.receive = func(_ context.Context, c canal.Conn, f canal.Frame) error {
		<-release
		ran.Add(1)
		return c.Send(f)
	}
	o := fastOptions()
	o.SessionWorkers = 3
	s := canaltest.NewServer(t, p, o)
	const clients = 12
	var cs []*canaltest.Communicator
	for range clients {
		c := mustDial(t, s, "/", canaltest.DialOptions{})
		p.lastConn(t)
		if err := c.SendText("q"); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	time.Sleep(100 * time.Millisecond) // twenty stall periods with nothing finishing
	if st := s.Stats(); st.SessionWorkersPeak > o.SessionWorkers {
		t.Fatalf("%d session goroutines, limit %d", st.SessionWorkersPeak, o.SessionWorkers)
	}
	close(release)
	for i, c := range cs {
		if got, err := c.ReceiveText(ctxT(t)); err != nil || got != "q" {
			t.Fatalf("client %d got %q, %v", i, got, err)
		}
	}
	if n := ran.Load(); n != clients {
		t.Fatalf("%d of %d calls ran", n, clients)
	}
	if st := s.Stats(); st.SessionWorkersPeak > o.SessionWorkers {
		t.Fatalf("peak %d session goroutines, limit %d", st.SessionWorkersPeak, o.SessionWorkers)
	}
}

// TestFastPathPerTransport: a ready group frame (consumer.Options.Frames) to an idle
// connection goes straight to its outbox, with no session call, on every transport;
// one that arrives while a session call runs waits in the inbox, after it.
func TestFastPathPerTransport(t *testing.T) {
	t.Parallel()
	msg := canal.Message{"type": "room.message"}
	for _, tc := range []struct {
		name string
		open func(t *testing.T, s *canaltest.Server) func() string // returns the next text frame or event
	}{
		{"websocket", func(t *testing.T, s *canaltest.Server) func() string {
			c := mustDial(t, s, "/", canaltest.DialOptions{})
			return func() string {
				got, err := c.ReceiveText(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
		}},
		{"event stream", func(t *testing.T, s *canaltest.Server) func() string {
			es := dialEvents(t, s, "/", canaltest.DialOptions{})
			return func() string { return nextEvent(t, es).Data }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProbe()
			var events atomic.Int32
			p.event = func(context.Context, canal.Conn, canal.Message) error { events.Add(1); return nil }
			s := canaltest.NewServer(t, p, sseOptions())
			next := tc.open(t, s)
			fd, ok := canal.AsFrameDeliverer(p.lastConn(t))
			if !ok {
				t.Fatal("the server's Conn is not a FrameDeliverer")
			}
			for i := range 3 {
				if !fd.DeliverFrame(msg, canal.Text(fmt.Sprint(i))) {
					t.Fatal("DeliverFrame refused")
				}
				if got := next(); got != fmt.Sprint(i) {
					t.Fatalf("got %q, want %d", got, i)
				}
			}
			st := s.Stats()
			if st.WriteWorkers != runtime.GOMAXPROCS(0) {
				t.Fatalf("Stats.WriteWorkers = %d, want GOMAXPROCS (%d)", st.WriteWorkers, runtime.GOMAXPROCS(0))
			}
			if st.Frames != 3 || st.FramesDirect != 3 || events.Load() != 0 {
				t.Fatalf("Stats: %d frames, %d direct; %d session calls; want 3, 3, 0", st.Frames, st.FramesDirect, events.Load())
			}
		})
	}
}
