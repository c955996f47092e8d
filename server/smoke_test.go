package server_test

import (
	"context"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/server"
)

type echo struct{}

func (echo) Receive(ctx context.Context, c *consumer.Conn, f canal.Frame) error { return c.Send(f) }

func TestSmoke(t *testing.T) {
	h, err := consumer.New(func() echo { return echo{} }, consumer.Options[echo]{})
	if err != nil {
		t.Fatal(err)
	}
	s := canaltest.NewServer(t, h, server.Options{})
	c, err := canaltest.Dial(context.Background(), s.URL("/ws/"), canaltest.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendText("hi"); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReceiveText(context.Background())
	if err != nil || got != "hi" {
		t.Fatalf("got %q %v", got, err)
	}
	if err := c.Close(1000); err != nil {
		t.Fatal(err)
	}
}
