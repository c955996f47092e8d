//go:build !linux

package server

import "net"

// listenConfig is how Listen opens its socket: Go's defaults, keepalive set on each
// accepted connection (see sockopt_linux.go for why Linux differs).
func listenConfig() net.ListenConfig { return net.ListenConfig{} }

// setSendBuffer leaves the kernel's send buffers as they are: Options.SocketSendBuffer
// is applied on Linux only.
func setSendBuffer(net.Listener, int) error { return nil }
