package server_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
)

// TestLogFloodIsLimited: a flood of handshakes the handler refuses (clients without
// a ticket retrying in a loop) and of failing sessions costs a line a second per
// kind, with the count of the lines held back, never a line each; the query string
// never reaches the log.
func TestLogFloodIsLimited(t *testing.T) {
	t.Parallel()
	p := newProbe()
	p.connect = func(_ context.Context, c canal.Conn) error {
		if strings.Contains(c.Scope().RawQuery, "deny") {
			return canal.Reject(403, "no ticket")
		}
		return c.Accept(canal.AcceptOptions{})
	}
	p.receive = func(context.Context, canal.Conn, canal.Frame) error {
		return context.DeadlineExceeded // a handler error: 1011 and a log line
	}
	var logs canaltest.LogBuffer
	o := fastOptions()
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) }) // registered first, so it runs after the server's shutdown
	s := canaltest.NewServer(t, p, o)
	go func() { // Disconnect runs for each refusal too (1006)
		for {
			select {
			case <-p.disconnect:
			case <-stop:
				return
			}
		}
	}()
	const n = 200
	for range n {
		_, err := dial(t, s, "/?deny=1&ticket=SECRET", canaltest.DialOptions{})
		if err == nil {
			t.Fatal("a refused handshake was accepted")
		}
		<-p.conns
	}
	for range 20 {
		c := mustDial(t, s, "/", canaltest.DialOptions{})
		<-p.conns
		_ = c.SendText("x")
		if code, _, err := c.ExpectClose(ctxT(t)); err != nil || code != canal.CloseInternalError {
			t.Fatalf("close %d, %v; want 1011", code, err)
		}
	}
	out := logs.String()
	if strings.Contains(out, "SECRET") {
		t.Fatal("the query string reached the log")
	}
	rejected := strings.Count(out, "handshake rejected")
	failed := strings.Count(out, "session error")
	if rejected < 1 || rejected > 3 || failed < 1 || failed > 3 {
		t.Fatalf("%d lines for %d refused handshakes, %d for 20 session errors:\n%s", rejected, n, failed, out)
	}
}
