package layers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canal-rt/canal"
)

// expectWoken waits for n Receive calls that were blocked when the layer closed; each
// must end with ErrLayerClosed.
func expectWoken(t testing.TB, errc <-chan error, n int) {
	t.Helper()
	for range n {
		select {
		case err := <-errc:
			if !errors.Is(err, canal.ErrLayerClosed) {
				t.Errorf("blocked Receive returned %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Close did not wake a receiver")
		}
	}
}

// expectClosed checks that every operation of a closed layer fails with
// ErrLayerClosed. attached is a channel the layer attached before it closed.
func expectClosed(t testing.TB, l canal.Layer, attached string) {
	t.Helper()
	ctx := context.Background()
	nop := func(canal.Message) bool { return true }
	_, recvErr := l.Receive(ctx, "x")
	_, newErr := l.NewChannel(ctx, "")
	_, _, attErr := l.Attach(ctx, "", nop)
	for op, err := range map[string]error{
		"Send":         l.Send(ctx, attached, msg("x")),
		"SendQueue":    l.Send(ctx, "x", msg("x")),
		"Receive":      recvErr,
		"NewChannel":   newErr,
		"Attach":       attErr,
		"GroupAdd":     l.GroupAdd(ctx, "g", "x"),
		"GroupDiscard": l.GroupDiscard(ctx, "g", "x"),
		"GroupSend":    l.GroupSend(ctx, "g", msg("x")),
		"Flush":        l.Flush(ctx),
	} {
		if !errors.Is(err, canal.ErrLayerClosed) {
			t.Errorf("%s after Close: %v", op, err)
		}
	}
}
