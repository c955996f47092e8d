package server

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/canal-rt/canal"
)

// payload returns n deterministic bytes, different for each seed.
func payload(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) + byte(i>>8)
	}
	return p
}

// frames are a mix of sizes: tiny, just under and over zeroCopyMin, 16- and 64-bit
// length headers.
func testFrames() []canal.Frame {
	sizes := []int{0, 5, 125, 126, zeroCopyMin - 1, zeroCopyMin, 3000, 32 << 10, 70000, 1}
	fs := make([]canal.Frame, len(sizes))
	for i, n := range sizes {
		fs[i] = canal.Frame{Binary: i%2 == 1, Data: payload(n, byte(i))}
	}
	return fs
}

// encode is the byte-exact wire form of fs, copied (the reference encoding).
func encode(fs []canal.Frame) []byte {
	w := &wsWire{}
	var out []byte
	for _, f := range fs {
		out = w.appendFrame(out, f)
	}
	return out
}

// concat joins a sock's pending segments.
func concat(segs [][]byte) []byte {
	var out []byte
	for _, s := range segs {
		out = append(out, s...)
	}
	return out
}

// within reports whether seg lies inside p's array.
func within(seg, p []byte) bool {
	if len(seg) == 0 || len(p) == 0 {
		return false
	}
	a, b := uintptr(unsafe.Pointer(&seg[0])), uintptr(unsafe.Pointer(&p[0]))
	return a >= b && a+uintptr(len(seg)) <= b+uintptr(len(p))
}

// heldSock is a sock whose flusher is taken to be busy, so that writes only queue: the
// bookkeeping alone, with no goroutine and no network.
func heldSock(limit int) *sock {
	s := newSock(nil, &Options{SendBuffer: limit, WriteTimeout: time.Second}, &budget{max: 1 << 40}, func(error) {})
	s.flushing = true
	return s
}

// Whatever the kernel took of a write (every offset: inside a header, inside a shared
// payload, inside a copied one, between segments), pending holds exactly the rest, the
// large payloads by reference, and nothing of the lent buffer, which the writer reuses.
func TestKeepEveryOffset(t *testing.T) {
	fs := testFrames()
	want := encode(fs)
	w := &wsWire{}
	for _, skip := range offsets(fs) {
		v := &vec{}
		for _, f := range fs {
			w.addFrame(v, f)
		}
		if v.len() != len(want) {
			t.Fatalf("vec holds %d bytes, want %d", v.len(), len(want))
		}
		s := heldSock(1 << 20)
		if err := s.keepLocked(v, skip); err != nil {
			t.Fatalf("skip %d: %v", skip, err)
		}
		for i := range v.buf { // the writer reuses its buffer
			v.buf[i] = 0xEE
		}
		if got := concat(s.pending); !bytes.Equal(got, want[skip:]) {
			t.Fatalf("skip %d: pending differs from the encoding's rest (%d bytes, want %d)", skip, len(got), len(want)-skip)
		}
		if s.held != len(want)-skip {
			t.Fatalf("skip %d: held %d, want %d", skip, s.held, len(want)-skip)
		}
		for _, seg := range s.pending {
			if within(seg, v.buf) {
				t.Fatalf("skip %d: a pending segment points into the lent buffer", skip)
			}
		}
		big := fs[7].Data // 32 KiB: by reference unless skipped past
		if end := bytes.Index(want, big) + len(big); skip < end-1 {
			found := false
			for _, seg := range s.pending {
				found = found || within(seg, big)
			}
			if !found {
				t.Fatalf("skip %d: the 32 KiB payload was copied, not referred to", skip)
			}
		}
	}
}

// offsets are the places a write of fs may stop that matter: around every segment
// boundary (a header is 2 to 10 bytes, so up to 10 past it is inside the next header),
// and a stride through the payloads.
func offsets(fs []canal.Frame) []int {
	v := &vec{}
	for _, f := range fs {
		(&wsWire{}).addFrame(v, f)
	}
	total, at := v.len(), 0
	set := map[int]bool{0: true, total: true}
	for _, seg := range v.segments(nil) {
		for d := -2; d <= 10; d++ {
			if at+d >= 0 && at+d <= total {
				set[at+d] = true
			}
		}
		at += len(seg)
	}
	for o := 0; o <= total; o += 997 {
		set[o] = true
	}
	var out []int
	for o := range set {
		out = append(out, o)
	}
	return out
}

// Randomized: writes of random frames, the first one partly taken, the rest queued
// behind it, as a stalled peer sees them. Pending is always the encodings' tail, and
// adjacent copies share segments (few entries for writev).
func TestKeepRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := &wsWire{}
	for round := 0; round < 300; round++ {
		s := heldSock(8 << 20)
		var want []byte
		for k := 0; k < 1+r.IntN(12); k++ {
			var fs []canal.Frame
			for range 1 + r.IntN(6) {
				n := r.IntN(4)
				switch n {
				case 0:
					n = r.IntN(130)
				case 1:
					n = r.IntN(2 * zeroCopyMin)
				default:
					n = r.IntN(70000)
				}
				fs = append(fs, canal.Frame{Data: payload(n, byte(r.Uint32()))})
			}
			v := &vec{}
			for _, f := range fs {
				w.addFrame(v, f)
			}
			enc := encode(fs)
			skip := 0
			if k == 0 {
				skip = r.IntN(len(enc) + 1)
			}
			if err := s.keepLocked(v, skip); err != nil {
				t.Fatal(err)
			}
			clear(v.buf)
			want = append(want, enc[skip:]...)
		}
		if got := concat(s.pending); !bytes.Equal(got, want) {
			t.Fatalf("round %d: pending is not the writes' tail (%d bytes, want %d)", round, len(got), len(want))
		}
		if s.held != len(want) {
			t.Fatalf("round %d: held %d, want %d", round, s.held, len(want))
		}
		for i := 1; i < len(s.pending); i++ {
			p, q := s.pending[i-1], s.pending[i]
			if len(p) > 0 && len(q) > 0 && within(p, s.own) && within(q, s.own) &&
				unsafe.Pointer(unsafe.SliceData(p[len(p):cap(p)])) == unsafe.Pointer(&q[0]) {
				t.Fatalf("round %d: adjacent copies in two segments", round)
			}
		}
	}
}

// tcpPair is a loopback TCP connection: the server side writes with a tiny send buffer,
// the client side reads (or not) with a tiny receive buffer.
func tcpPair(t testing.TB) (srv, cli *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: nil}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv, cli = a.(*net.TCPConn), c.(*net.TCPConn)
	_ = srv.SetWriteBuffer(4096)
	_ = cli.SetReadBuffer(4096)
	return srv, cli
}

// stalledSock wraps srv as the server does, with a flusher counted by wg.
func stalledSock(srv net.Conn, limit int, b *budget, wg *sync.WaitGroup) *sock {
	s := newSock(srv, &Options{SendBuffer: limit, WriteTimeout: 10 * time.Second}, b, func(error) {})
	s.wg = wg
	return s
}

// Frames written with writev to a peer that reads only later arrive byte-exact and in
// order: the kernel stops taking them at arbitrary offsets, and the flusher writes the
// kept segments (copies and shared payloads) with writev.
func TestWritevPeerReadsLate(t *testing.T) {
	srv, cli := tcpPair(t)
	defer cli.Close()
	var wg sync.WaitGroup
	b := &budget{max: 1 << 30}
	s := stalledSock(srv, 64<<20, b, &wg)
	if s.raw == nil && nonBlockingWrites {
		t.Fatal("a TCP socket has no raw write")
	}
	w := &wsWire{s: s}
	fs := testFrames()
	var want []byte
	v := &vec{}
	for round := range 20 {
		batch := fs[round%len(fs):]
		batch = batch[:min(len(batch), 1+round%4)]
		v.reset()
		for _, f := range batch {
			w.addFrame(v, f)
		}
		if err := s.writev(v); err != nil {
			t.Fatal(err)
		}
		clear(v.buf) // the writer reuses its buffer at once
		want = append(want, encode(batch)...)
	}
	if s.buffered() == 0 {
		t.Fatalf("the kernel took all %d bytes: the test did not stall the peer", len(want))
	}
	_ = cli.SetReadBuffer(1 << 20) // the stall is made: now read fast
	_ = cli.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(cli, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("received bytes differ from the frames sent, first at offset %d of %d", i, len(want))
	}
	wg.Wait()
	if b.inUse() != 0 || s.buffered() != 0 {
		t.Fatalf("after the flush: budget %d, buffered %d", b.inUse(), s.buffered())
	}
	srv.Close()
}

// Stalled peers of one group hold the group's frame by reference: N sockets that do not
// read, sent one shared 32 KiB frame each, allocate far less than N copies of it.
func TestStalledPeersShareFrame(t *testing.T) {
	if !nonBlockingWrites {
		t.Skip("no non-blocking writes here: every write is the flusher's")
	}
	const n = 64
	frame := canal.Frame{Data: payload(32<<10, 3)}
	var wg sync.WaitGroup
	b := &budget{max: 1 << 30}
	socks := make([]*sock, n)
	conns := make([]*net.TCPConn, 0, 2*n)
	for i := range socks {
		srv, cli := tcpPair(t)
		conns = append(conns, srv, cli)
		socks[i] = stalledSock(srv, 256<<10, b, &wg)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	// Fill each kernel buffer first, so that the frame itself waits.
	filler := &vec{}
	(&wsWire{}).addFrame(filler, canal.Frame{Data: payload(200<<10, 9)})
	for _, s := range socks {
		if err := s.writev(filler); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until every flusher has taken the filler's rest and blocks writing it: a
	// flusher that first ran after the frame was queued would take the frame along
	// (out of pending), as it once did on a loaded machine.
	deadline := time.Now().Add(10 * time.Second)
	for i, s := range socks {
		for {
			s.mu.Lock()
			taken := s.inFlight > 0 && len(s.pending) == 0
			s.mu.Unlock()
			if taken {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("peer %d: its flusher never took the filler", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	v := &vec{}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	held0 := b.inUse()
	for _, s := range socks {
		v.reset()
		(&wsWire{s: s}).addFrame(v, frame)
		if err := s.writev(v); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	held := b.inUse() - held0
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d stalled peers: %d bytes of the frame held, %d bytes allocated", n, held, alloc)
	if held < n*(32<<10) {
		t.Fatalf("peers took part of the frame (%d bytes held, want %d): not stalled", held, n*(32<<10)+n*4)
	}
	if alloc > n*(32<<10)/8 {
		t.Fatalf("%d bytes allocated for %d stalled peers of one 32 KiB frame: the frame was copied", alloc, n)
	}
	for i, s := range socks {
		s.mu.Lock()
		shared := false
		for _, seg := range s.pending {
			shared = shared || within(seg, frame.Data)
		}
		s.mu.Unlock()
		if !shared {
			t.Fatalf("peer %d: pending holds no reference to the shared frame", i)
		}
	}
}

// BenchmarkStalledFrame32K is the cost of delivering one 32 KiB frame to a peer that
// does not read: what the socket keeps for it.
func BenchmarkStalledFrame32K(b *testing.B) {
	f := canal.Frame{Data: payload(32<<10, 1)}
	s := heldSock(256 << 10)
	w := &wsWire{s: s}
	v := &vec{}
	b.ReportAllocs()
	b.SetBytes(int64(len(f.Data)))
	for i := 0; b.Loop(); i++ {
		if i%7 == 0 { // the peer caught up: start over within SendBuffer
			s.mu.Lock()
			s.dropLocked()
			s.mu.Unlock()
		}
		v.reset()
		w.addFrame(v, f)
		if err := s.writev(v); err != nil {
			b.Fatal(err)
		}
	}
}

// A socket without a file descriptor (TLS) takes every write through the flusher,
// which joins the segments into sizeable writes: the peer gets the frames byte-exact.
func TestNoDescriptorJoinsSegments(t *testing.T) {
	srv, cli := net.Pipe()
	defer cli.Close()
	var wg sync.WaitGroup
	b := &budget{max: 1 << 30}
	s := stalledSock(srv, 64<<20, b, &wg)
	if s.raw != nil {
		t.Fatal("a pipe has a raw write")
	}
	w := &wsWire{s: s}
	fs := testFrames()
	var want []byte
	v := &vec{}
	for range 3 {
		v.reset()
		for _, f := range fs {
			w.addFrame(v, f)
		}
		if err := s.writev(v); err != nil {
			t.Fatal(err)
		}
		clear(v.buf)
		want = append(want, encode(fs)...)
	}
	got := make([]byte, len(want))
	var writes int
	for n := 0; n < len(got); writes++ { // a pipe's Read returns one Write's bytes at most
		m, err := cli.Read(got[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	if !bytes.Equal(got, want) {
		t.Fatal("received bytes differ from the frames sent")
	}
	if most := len(want)/joinSize + 3*len(fs); writes > most {
		t.Fatalf("%d writes for %d bytes: segments were not joined", writes, len(want))
	}
	wg.Wait()
	srv.Close()
}

// A peer that never reads fails the flusher's blocked writev once WriteTimeout passes,
// with a timeout (the writer's 1013), and the budget gets its bytes back.
func TestFlusherTimesOut(t *testing.T) {
	srv, cli := tcpPair(t)
	defer cli.Close()
	defer srv.Close()
	var wg sync.WaitGroup
	b := &budget{max: 1 << 30}
	failed := make(chan error, 1)
	s := newSock(srv, &Options{SendBuffer: 1 << 20, WriteTimeout: 200 * time.Millisecond}, b, func(err error) { failed <- err })
	s.wg = &wg
	v := &vec{}
	(&wsWire{}).addFrame(v, canal.Frame{Data: payload(512<<10, 1)})
	if err := s.writev(v); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-failed:
		if !isTimeout(err) {
			t.Fatalf("the flusher failed with %v, want a timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the flusher did not time out")
	}
	wg.Wait()
	if b.inUse() != 0 {
		t.Fatalf("budget holds %d bytes after the failure", b.inUse())
	}
	if err := s.write([]byte("x")); err == nil {
		t.Fatal("a write after the failure succeeded")
	}
}
