package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canal-rt/canal"
)

// flakyListener fails its first accepts with errs, then serves conns.
type flakyListener struct {
	mu     sync.Mutex
	errs   []error
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *flakyListener) Close() error   { f.once.Do(func() { close(f.closed) }); return nil }
func (f *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testServer(t *testing.T, opts Options) (*Server, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := New(canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) { return nil, nil }), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, &logs
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// TestAcceptSurvivesExhaustion: EMFILE, ENFILE and friends are retried with a backoff
// and logged once for the episode, and once for the recovery; Accept then returns
// the next connection.
func TestAcceptSurvivesExhaustion(t *testing.T) {
	t.Parallel()
	s, logs := testServer(t, Options{})
	var errs []error
	for range 3 {
		errs = append(errs, acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE), acceptErr(syscall.ECONNABORTED))
	}
	f := &flakyListener{errs: errs, conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	ln := s.Listener(f)
	defer ln.Close()
	a, b := net.Pipe()
	defer b.Close()
	f.conns <- a
	start := time.Now()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	defer c.Close()
	// 5 ms doubling, capped at 1 s: 5+10+...+640 ms for the first 8, then 1 s.
	if took := time.Since(start); took < time.Second {
		t.Fatalf("9 failures retried in %v: no backoff", took)
	}
	out := logs.String()
	if n := strings.Count(out, "accept failed"); n != 1 || !strings.Contains(out, "too many open files") {
		t.Fatalf("want one line for the episode, got %d:\n%s", n, out)
	}
	if !strings.Contains(out, "accepting again") || !strings.Contains(out, "failures=9") {
		t.Fatalf("want the recovery logged with the failure count:\n%s", out)
	}
}

// TestAcceptStopsOnClose: Close ends a backoff at once, and a permanent error is
// returned as it is.
func TestAcceptStopsOnClose(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Options{})
	var errs []error
	for range 100 {
		errs = append(errs, acceptErr(syscall.EMFILE))
	}
	f := &flakyListener{errs: errs, conns: make(chan net.Conn), closed: make(chan struct{})}
	ln := s.Listener(f)
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	time.Sleep(100 * time.Millisecond)
	_ = ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept kept retrying after Close")
	}

	perm := errors.New("permanent")
	f2 := &flakyListener{errs: []error{perm}, conns: make(chan net.Conn), closed: make(chan struct{})}
	if _, err := s.Listener(f2).Accept(); !errors.Is(err, perm) {
		t.Fatalf("Accept: %v, want the permanent error", err)
	}
}

// TestCountedConnClosesOnce: however often a conn is closed (Canal and fasthttp may
// both close a hijacked one), it gives back one slot.
func TestCountedConnClosesOnce(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Options{MaxConnections: 1})
	f := &flakyListener{conns: make(chan net.Conn, 2), closed: make(chan struct{})}
	ln := s.Listener(f)
	defer ln.Close()
	a1, b1 := net.Pipe()
	a2, b2 := net.Pipe()
	defer b1.Close()
	defer b2.Close()
	f.conns <- a1
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.opts.defense.open.Load(); got != 1 {
		t.Fatalf("open = %d, want 1", got)
	}
	for range 3 {
		_ = c.Close()
	}
	if got := s.opts.defense.open.Load(); got != 0 {
		t.Fatalf("open = %d after closing, want 0", got)
	}
	f.conns <- a2
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.Close()
	if got := s.opts.defense.open.Load(); got != 0 {
		t.Fatalf("open = %d, want 0", got)
	}
}

// TestDefaultMaxConnectionsFromLimit: the file limit minus the headroom, at least 64.
func TestDefaultMaxConnectionsFromLimit(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Options{})
	cur, ok := fileLimit()
	want := max(int(cur)-fdHeadroom, minDefaultConn)
	if !ok {
		want = int(^uint(0) >> 1)
	}
	if s.opts.MaxConnections != want {
		t.Fatalf("MaxConnections = %d with a file limit of %d, want %d", s.opts.MaxConnections, cur, want)
	}
}

// TestCountedConnKeepsDescriptor: the wrapper still offers the TCP conn's descriptor,
// which Canal's writer uses for non-blocking writes.
func TestCountedConnKeepsDescriptor(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, Options{})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := s.Listener(tcp)
	defer ln.Close()
	sc, ok := acceptedConn(t, ln).(syscall.Conn)
	if !ok {
		t.Fatal("the accepted conn hides syscall.Conn")
	}
	if _, err := sc.SyscallConn(); err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
}

// acceptedConn dials ln and returns the connection ln accepts; both ends close when
// the test ends.
func acceptedConn(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	client, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
