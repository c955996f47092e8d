package server

import (
	"net"
	"syscall"
)

// setSendBuffer sets SO_SNDBUF on a listening TCP socket, which Linux copies to every
// socket it accepts (Options.SocketSendBuffer); n <= 0 leaves the kernel's
// autotuning. A listener without a file descriptor (a TLS wrapper) is left as it is.
func setSendBuffer(ln net.Listener, n int) error {
	if n <= 0 {
		return nil
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, n)
	}); err != nil {
		return err
	}
	return serr
}

// listenConfig is how Listen opens its socket. Two settings on the listener save
// system calls on every connection, and Linux copies both to the sockets it accepts:
//
//   - Keepalive: Go's net package sets it on every accepted connection, four
//     setsockopt calls each; Listen sets it once on the listener instead, with the
//     values Go would have used (first probe after 15 s idle, then every 15 s, 9
//     probes).
//   - TCP_DEFER_ACCEPT (1 s): accept returns a connection once its first bytes (the
//     HTTP request) have arrived, so the first read finds them instead of failing with
//     EAGAIN and parking the goroutine until the poller wakes it (about 0.3 fewer failed
//     reads per W1 handshake, `strace -c -f -p` on the bench server during W1). A client that connects and sends nothing
//     holds no descriptor meanwhile; after the second the kernel hands it over anyway
//     and HandshakeTimeout applies as before. nginx's "listen … deferred" is the same.
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, Control: listenerControl}
}

const (
	keepAliveIdle     = 15 // seconds, Go's default
	keepAliveInterval = 15 // seconds, Go's default
	keepAliveCount    = 9  // Go's default
	deferAccept       = 1  // seconds a connection may wait for its first bytes
)

func listenerControl(_, _ string, c syscall.RawConn) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		f := int(fd)
		for _, o := range [...]struct{ level, opt, v int }{
			{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdle},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveInterval},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
			{syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAccept},
		} {
			if err = syscall.SetsockoptInt(f, o.level, o.opt, o.v); err != nil {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}
