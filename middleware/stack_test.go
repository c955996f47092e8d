package middleware_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/middleware"
)

func TestStackOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var trace []string
	mark := func(name string) canal.Middleware {
		return func(next canal.Handler) canal.Handler {
			return canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
				mu.Lock()
				trace = append(trace, name)
				mu.Unlock()
				return next.Connect(ctx, c)
			})
		}
	}
	args := []canal.Middleware{mark("a"), mark("b"), mark("c")}
	stack := middleware.Stack(args...)
	args[0] = mark("changed") // Stack copied its arguments
	if _, err := stack(&okHandler{}).Connect(context.Background(), newConn(nil)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(trace, want) {
		t.Fatalf("order = %q, want %q", trace, want)
	}
}

func TestStackEmpty(t *testing.T) {
	t.Parallel()
	h := &okHandler{}
	if got := middleware.Stack()(h); got != canal.Handler(h) {
		t.Fatalf("empty stack wrapped the handler: %T", got)
	}
}

func TestStackNilPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if v := recover(); v == nil {
			t.Fatal("no panic for a nil middleware")
		}
	}()
	var origin canal.Middleware // e.g. from an Origin call whose error was ignored
	middleware.Stack(middleware.Recover(nil), origin)
}
