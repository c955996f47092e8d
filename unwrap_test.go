package canal_test

import (
	"testing"

	"github.com/canal-rt/canal"
)

// serverConn stands for the server's Conn: it has DeliverFrame.
type serverConn struct{ canal.Conn }

func (serverConn) DeliverFrame(canal.Message, canal.Frame) bool { return true }

// wrapper changes nothing but Accept (not modelled) and unwraps.
type wrapper struct{ canal.Conn }

func (w wrapper) Unwrap() canal.Conn { return w.Conn }

// opaque wraps without Unwrap.
type opaque struct{ canal.Conn }

// selfish unwraps to itself.
type selfish struct{ canal.Conn }

func (s *selfish) Unwrap() canal.Conn { return s }

// nilUnwrap unwraps to nothing.
type nilUnwrap struct{ canal.Conn }

func (nilUnwrap) Unwrap() canal.Conn { return nil }

func TestAsFrameDeliverer(t *testing.T) {
	t.Parallel()
	base := serverConn{}
	tests := []struct {
		name string
		c    canal.Conn
		want bool
	}{
		{"the server's Conn", base, true},
		{"one wrapper", wrapper{base}, true},
		{"two wrappers", wrapper{wrapper{base}}, true},
		{"a wrapper without Unwrap hides it", opaque{base}, false},
		{"behind an opaque wrapper", wrapper{opaque{base}}, false},
		{"a wrapper that unwraps to itself", &selfish{base}, false},
		{"a wrapper that unwraps to nil", nilUnwrap{base}, false},
		{"no capability at all", wrapper{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fd, ok := canal.AsFrameDeliverer(tt.c)
			if ok != tt.want || (fd != nil) != tt.want {
				t.Fatalf("AsFrameDeliverer = %v, %v; want found=%v", fd, ok, tt.want)
			}
			if ok {
				if _, isBase := fd.(serverConn); !isBase {
					t.Fatalf("found %T; want the server's Conn", fd)
				}
			}
		})
	}
}
