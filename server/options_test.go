package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/server"
)

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	h := canal.HandlerFunc(func(context.Context, canal.Conn) (canal.Session, error) { return nil, nil })
	tests := []struct {
		name string
		root canal.Handler
		opts server.Options
		ok   bool
	}{
		{"zero value", h, server.Options{}, true},
		{"nil root", nil, server.Options{}, false},
		{"negative timeout", h, server.Options{HandshakeTimeout: -time.Second}, false},
		{"negative ping", h, server.Options{PingInterval: -1}, false},
		{"negative queue", h, server.Options{SendQueue: -1}, false},
		{"negative read limit", h, server.Options{ReadLimit: -1}, false},
		{"read buffer too small", h, server.Options{ReadBufferSize: 256}, false},
		{"read buffer just enough", h, server.Options{ReadBufferSize: 257}, true},
		{"socket send buffer off", h, server.Options{SocketSendBuffer: -1}, true},
		{"socket send buffer too large", h, server.Options{SocketSendBuffer: 64<<20 + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := server.New(tt.root, tt.opts)
			if tt.ok != (err == nil) {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, server.ErrOptions) {
				t.Fatalf("error %v does not wrap ErrOptions", err)
			}
		})
	}
}
