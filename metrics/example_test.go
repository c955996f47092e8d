package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/metrics"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
)

// Example mounts /metrics, /healthz and /readyz on the Fiber app that serves the
// sockets, opens one socket, and reads what Prometheus would scrape.
func Example() {
	m, err := metrics.New(metrics.Options{}) // a registry of its own
	if err != nil {
		panic(err)
	}
	health, err := metrics.NewHealth(metrics.HealthOptions{}) // add Checks: see ExampleNewHealth
	if err != nil {
		panic(err)
	}
	private := canal.HandlerFunc(func(ctx context.Context, c canal.Conn) (canal.Session, error) {
		return nil, canal.Reject(403, "members only")
	})
	srv, err := server.New(router.Must(router.Path("ws/private/", private)), server.Options{Observer: m})
	if err != nil {
		panic(err)
	}
	m.Server(srv) // its Stats, read at every scrape

	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	srv.Mount(app, "/")
	app.Get("/metrics", adaptor.HTTPHandler(m.Handler()))
	app.Get("/healthz", adaptor.HTTPHandler(health.Live()))
	app.Get("/readyz", adaptor.HTTPHandler(health.Ready()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = app.Listener(srv.Listener(ln)) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		health.Drain() // load balancers first, then the sockets
		_ = srv.Shutdown(ctx)
		_ = app.ShutdownWithContext(ctx)
	}()
	base := "http://" + ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = canaltest.Dial(ctx, "ws://"+ln.Addr().String()+"/ws/private/", canaltest.DialOptions{})
	var refused *canaltest.HandshakeError
	fmt.Println(errors.As(err, &refused), refused.Status)
	fmt.Print(get(base+"/readyz", ""))
	fmt.Print(get(base+"/metrics", "canal_handshakes_total{"))
	// Output:
	// true 403
	// ok
	// canal_handshakes_total{outcome="rejected",route="ws/private/",status="403",transport="websocket"} 1
}

// get returns the lines of url's body that start with prefix.
func get(url, prefix string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error() + "\n"
	}
	defer resp.Body.Close()
	var out strings.Builder
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out.WriteString(sc.Text() + "\n")
		}
	}
	return out.String()
}

// A readiness check that Redis answers a PING, within the check's timeout. The
// answer to /readyz names the check ("not ready: redis: timeout"), never the error,
// which may hold the address; the error goes to the log.
func ExampleNewHealth() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"localhost:6379"}})
	if err != nil {
		fmt.Println("Redis unavailable:", err)
		return
	}
	defer client.Close()
	health, err := metrics.NewHealth(metrics.HealthOptions{
		Checks: []metrics.Check{{Name: "redis", Func: func(ctx context.Context) error {
			return client.Do(ctx, client.B().Ping().Build()).Error()
		}}},
		Timeout: time.Second,
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", health.Live())
	mux.Handle("/readyz", health.Ready())
	_ = http.ListenAndServe("127.0.0.1:9090", mux)
}
