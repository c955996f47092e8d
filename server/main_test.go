package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test of the package must leave no goroutine behind: sockets, workers, writers,
// ping timers and test servers included. fasthttp's worker-pool janitor sleeps up to
// 10 s before it notices a shut-down server, and its clock goroutine lives for the
// process (started once, shared by all servers). Both are fasthttp's and bounded.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}
