//go:build !linux

package server

import "net"

// listenConfig is how Listen opens its socket: Go's defaults, keepalive set on each
// accepted connection (see keepalive_linux.go for why Linux differs).
func listenConfig() net.ListenConfig { return net.ListenConfig{} }
