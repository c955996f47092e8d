package main

import (
	"context"
	"flag"

	"github.com/canal-rt/canal/bench/internal/debugstats"
	"github.com/canal-rt/canal/consumer"
)

// The stress mode's hooks (bench/run.sh --stress, bench/README.md "Stress"):
//
//   - -debug-addr serves the goroutine count, its peak and the connections ended by
//     close code (bench/internal/debugstats) on a loopback address;
//   - users named "stall-…" (the clients that stop reading) also join group
//     "bench-stall", which receives a stream meant to overflow their buffers;
//   - Disconnect counts every close code the consumer receives, non-readers apart.
//
// None of it runs in the normal benchmark: without -debug-addr nothing is served,
// and no ticket there names a "stall-" user.
var (
	stats     = debugstats.New()
	debugAddr = flag.String("debug-addr", "", "stress mode: serve /debug/stats on this loopback address")
)

// startDebug starts the endpoint when -debug-addr is set.
func startDebug(ctx context.Context) error { return stats.Start(ctx, *debugAddr) }

// joinStall puts a designated non-reader in the stall group.
func joinStall(ctx context.Context, c *consumer.Conn) error {
	if !debugstats.Stalled(c.Scope().User.Username) {
		return nil
	}
	return c.GroupAdd(ctx, debugstats.StallGroup)
}

// Disconnect records the close code the server ended the connection with.
func (*Bench) Disconnect(_ context.Context, c *consumer.Conn, code int) {
	stats.Closed(c.Scope().User.Username, code)
}
