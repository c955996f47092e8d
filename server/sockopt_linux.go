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

// listenConfig is how Listen opens its socket. Go's net package sets TCP keepalive on
// every accepted connection, four setsockopt calls each; Linux copies the listening
// socket's keepalive settings to the sockets it accepts, so Listen sets them once on
// the listener instead, with the values Go would have used (first probe after 15 s
// idle, then every 15 s, 9 probes). Handshake-heavy loads save those calls on every
// connection; the connections themselves are configured exactly as before.
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAlive: -1, Control: keepAliveControl}
}

const (
	keepAliveIdle     = 15 // seconds, Go's default
	keepAliveInterval = 15 // seconds, Go's default
	keepAliveCount    = 9  // Go's default
)

func keepAliveControl(_, _ string, c syscall.RawConn) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		f := int(fd)
		for _, o := range [...]struct{ level, opt, v int }{
			{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdle},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveInterval},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
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
