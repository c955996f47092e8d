package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// BenchmarkFanout writes one frame to N sockets (as a group broadcast does after the
// layer) and waits until every client has read it: the server's half of fan-out.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p := newProbe()
			p.conns = make(chan canal.Conn, n)
			p.disconnect = make(chan int, n) // Disconnect must not block at the end
			s := canaltest.NewServer(b, p, fastOptions())
			clients := make([]*canaltest.Communicator, n)
			conns := make([]canal.Conn, n)
			ctx := context.Background()
			for i := range clients {
				c, err := canaltest.Dial(ctx, s.URL("/"), canaltest.DialOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Abort()
				clients[i] = c
				conns[i] = <-p.conns
			}
			frame := canal.Text(`{"type":"group","text":"hello, everyone"}`)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, c := range conns {
					if err := c.Send(frame); err != nil {
						b.Fatal(err)
					}
				}
				for _, c := range clients {
					if _, err := c.Receive(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkEcho is one client's round trip through a session that echoes.
func BenchmarkEcho(b *testing.B) {
	p := newProbe()
	s := canaltest.NewServer(b, p, fastOptions())
	ctx := context.Background()
	c, err := canaltest.Dial(ctx, s.URL("/"), canaltest.DialOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Abort()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.SendText(`{"type":"echo","seq":1}`); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is a full handshake and close, without auth.
func BenchmarkHandshake(b *testing.B) {
	p := newProbe()
	p.conns = make(chan canal.Conn, 1<<20)
	p.disconnect = make(chan int, 1<<20)
	s := canaltest.NewServer(b, p, fastOptions())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := canaltest.Dial(ctx, s.URL("/"), canaltest.DialOptions{})
		if err != nil {
			b.Fatal(err)
		}
		c.Abort()
	}
}
