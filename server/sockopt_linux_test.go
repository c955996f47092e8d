package server

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestListenConfigKeepAlive checks that connections accepted from listenConfig's
// socket get the keepalive settings Go would have set on each of them (they are
// inherited from the listener) and still have TCP_NODELAY.
func TestListenConfigKeepAlive(t *testing.T) {
	lc := listenConfig()
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
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
	if err := rc.Control(func(fd uintptr) {
		for _, w := range want {
			got, err := syscall.GetsockoptInt(int(fd), w.level, w.opt)
			if err != nil {
				t.Errorf("%s: %v", w.name, err)
			} else if got != w.v {
				t.Errorf("%s = %d on the accepted socket, want %d", w.name, got, w.v)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
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
			client, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rc, err := c.(*countedConn).Conn.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			if err := rc.Control(func(fd uintptr) {
				got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
			}); err != nil {
				t.Fatal(err)
			}
			if gerr != nil {
				t.Fatal(gerr)
			}
			if !tt.want(got) {
				t.Fatalf("SO_SNDBUF on the accepted socket = %d", got)
			}
		})
	}
}
