package server

import (
	"net"
	"syscall"
)

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
