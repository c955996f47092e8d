package server_test

import (
	"context"
	"fmt"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/server"
)

// The bounds of the server core are options whose zero value is safe; Stats shows how
// much of them is in use (for metrics, or a health check that alerts on slow
// consumers).
func ExampleServer_Stats() {
	refuse := canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
		return nil, canal.Reject(403, "example")
	})
	srv, err := server.New(refuse, server.Options{
		SessionWorkers:   64,       // goroutines running consumer hooks, at most
		SendBuffer:       64 << 10, // bytes a client may be behind before it is dropped (1013)
		MaxBufferedBytes: 16 << 20, // the same, over all clients
	})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())
	st := srv.Stats()
	fmt.Println("open:", st.Conns, "buffered:", st.Buffered, "slow consumers:", st.SlowConsumers)
	// Output: open: 0 buffered: 0 slow consumers: 0
}
