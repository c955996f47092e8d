package server

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// sockoptInt reads an integer socket option of c's descriptor (a connection's or a
// listener's).
func sockoptInt(t *testing.T, c any, level, opt int) int {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T hides syscall.Conn", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// listenTCP listens on loopback the way Listen does, until the test ends.
func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	lc := listenConfig()
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestListenConfigKeepAlive checks that connections accepted from listenConfig's
// socket get the keepalive settings Go would have set on each of them (they are
// inherited from the listener) and still have TCP_NODELAY.
func TestListenConfigKeepAlive(t *testing.T) {
	ln := listenTCP(t)
	c := acceptedConn(t, ln)
	want := []struct {
		name       string
		level, opt int
		v          int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdle},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveInterval},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	}
	for _, w := range want {
		if got := sockoptInt(t, c, w.level, w.opt); got != w.v {
			t.Errorf("%s = %d on the accepted socket, want %d", w.name, got, w.v)
		}
	}
}

// TestListenConfigDefersAccept: a connection that has sent nothing is not handed to
// Accept (it holds no descriptor of the server's) until its first bytes arrive, and
// then at once; the listener reports TCP_DEFER_ACCEPT.
func TestListenConfigDefersAccept(t *testing.T) {
	ln := listenTCP(t)
	tl := ln.(*net.TCPListener)
	if got := sockoptInt(t, tl, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT); got != deferAccept {
		t.Fatalf("TCP_DEFER_ACCEPT = %d on the listener, want %d", got, deferAccept)
	}
	// Within the defer a silent client is still the kernel's. A test descheduled past
	// it may see the kernel hand the client over, which proves nothing: try again
	// with a new client, a bounded number of times.
	var c net.Conn
	for attempt := 0; c == nil; attempt++ {
		if attempt == 3 {
			t.Fatal("descheduled past the defer period three times")
		}
		d, err := net.DialTimeout("tcp4", ln.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dialed := time.Now()
		_ = tl.SetDeadline(time.Now().Add(300 * time.Millisecond))
		ac, err := tl.Accept()
		if err != nil {
			c = d // still waiting in the kernel, as it should
			continue
		}
		ac.Close()
		d.Close()
		if waited := time.Since(dialed); waited < deferAccept*time.Second {
			t.Fatalf("a connection that sent nothing was accepted after %v", waited)
		}
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = tl.SetDeadline(time.Now().Add(2 * time.Second))
	ac, err := tl.Accept()
	if err != nil {
		t.Fatalf("not accepted once it sent its first bytes: %v", err)
	}
	ac.Close()
}

// TestListenerSocketSendBuffer: sockets accepted through Server.Listener get
// Options.SocketSendBuffer (Linux reports twice the value set), and a negative value
// leaves the kernel's default.
func TestListenerSocketSendBuffer(t *testing.T) {
	tests := []struct {
		name string
		set  int
		want func(got int) bool
	}{
		{"default 64 KiB", 0, func(got int) bool { return got == 2*defaultSocketSendBuffer }},
		{"32 KiB", 32 << 10, func(got int) bool { return got == 64<<10 }},
		{"kernel's", -1, func(got int) bool { return got != 2*defaultSocketSendBuffer }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := testServer(t, Options{SocketSendBuffer: tt.set})
			raw, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := s.Listener(raw)
			defer ln.Close()
			c := acceptedConn(t, ln)
			if got := sockoptInt(t, c, syscall.SOL_SOCKET, syscall.SO_SNDBUF); !tt.want(got) {
				t.Fatalf("SO_SNDBUF on the accepted socket = %d", got)
			}
		})
	}
}
