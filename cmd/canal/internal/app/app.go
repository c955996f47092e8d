package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/client"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/internal/redisconn"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/metrics"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
)

// App is a configured canal server: layer, credentials, routes and bus inputs. New
// builds it; Serve runs it until its context ends, then shuts it down gracefully.
type App struct {
	cfg *config.Config
	log *slog.Logger

	redis  map[string]rueidis.Client // by URL: tickets and buses share clients
	django *djangoClient
	layer  *localLayer
	buses  []*bus
	srv    *server.Server
	fiber  *fiber.App
	admin  *admin
	closed sync.Once
}

// New connects to what cfg names (Redis, the layer) and builds the handler. On error
// everything it opened is closed again.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, redis: map[string]rueidis.Client{}}
	defer func() {
		if err != nil {
			a.close(context.Background())
		}
	}()
	inner, err := a.newLayer(ctx)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	a.layer = newLocalLayer(inner, len(cfg.Bus) > 0)
	creds, err := a.credentials(ctx)
	if err != nil {
		return nil, err
	}
	a.django = newDjangoClient(cfg.DjangoToken, cfg.Django.Timeout.Duration)
	routes := make([]router.Route, 0, len(cfg.Routes))
	handlers := make([]*consumer.Handler[*socket], 0, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		h, err := newRouteHandler(rc, a.layer, a.django, log)
		if err != nil {
			return nil, fmt.Errorf("route[%d]: %w", i, err)
		}
		handlers = append(handlers, h)
		chain, err := creds.chain(cfg, rc)
		if err != nil {
			return nil, fmt.Errorf("route[%d]: %w", i, err)
		}
		wrapped := chain.Then(h)
		if rc.Path != "" {
			routes = append(routes, router.Path(rc.Path, wrapped))
		} else {
			routes = append(routes, router.Regex(rc.Regex, wrapped))
		}
	}
	root, err := router.New(routes...)
	if err != nil {
		return nil, err
	}
	for _, bc := range cfg.Bus {
		client, err := a.redisClient(ctx, bc.Redis)
		if err != nil {
			return nil, fmt.Errorf("bus %s: %w", bc.Channel, err)
		}
		a.buses = append(a.buses, &bus{cfg: bc, client: client, local: a.layer, log: log})
	}
	if a.admin, err = a.newAdmin(); err != nil {
		return nil, err
	}
	a.srv, err = server.New(root, server.Options{
		Observer:         a.admin.metrics,
		Origins:          cfg.Origins,
		MaxConnections:   cfg.Server.MaxConnections,
		HandshakeTimeout: cfg.Server.HandshakeTimeout.Duration,
		ReadLimit:        cfg.Server.ReadLimit,
		EventStreams:     cfg.Server.EventStreams,
		SessionWorkers:   cfg.Server.SessionWorkers,
		PingInterval:     cfg.Server.PingInterval.Duration,
		SocketSendBuffer: cfg.Server.SocketSendBuffer,
		Logger:           log,
	})
	if err != nil {
		return nil, err
	}
	a.admin.metrics.Server(a.srv)
	for i, h := range handlers {
		a.admin.metrics.Consumer(cfg.Routes[i].Pattern(), h)
	}
	if ls, ok := inner.(metrics.LayerStats); ok {
		a.admin.metrics.Layer("default", ls)
	}
	a.fiber = fiber.New(fiber.Config{DisableStartupMessage: true})
	a.srv.Mount(a.fiber, "/")
	if cfg.Server.ServeClientJS() {
		// After Mount: an upgrade to any path still goes to the sockets' routes,
		// plain HTTP falls through to here.
		a.fiber.Get("/canal.js", adaptor.HTTPHandler(client.Handler()))
	}
	return a, nil
}

func (a *App) newLayer(ctx context.Context) (canal.Layer, error) {
	l := a.cfg.Layer
	history := historyRules(l.History)
	switch l.Backend {
	case "redis":
		return layers.NewRedis(ctx, layers.RedisOptions{Hosts: l.Hosts, Prefix: l.Prefix, Capacity: l.Capacity,
			ReceiveBuffer: l.ReceiveBuffer, SymmetricEncryptionKeys: a.cfg.LayerKeys, Logger: a.log, History: history})
	case "pubsub": // keeps no history: config refuses [[layer.history]] with it
		return layers.NewRedisPubSub(ctx, layers.RedisPubSubOptions{Hosts: l.Hosts, Prefix: l.Prefix, Capacity: l.Capacity,
			SymmetricEncryptionKeys: a.cfg.LayerKeys, Logger: a.log})
	}
	return layers.NewMemory(layers.MemoryOptions{Capacity: l.Capacity, History: history})
}

// historyRules converts [[layer.history]] to the layers' rules (zero values are
// the layers' defaults).
func historyRules(rs []config.HistoryRule) []layers.HistoryRule {
	if len(rs) == 0 {
		return nil
	}
	out := make([]layers.HistoryRule, len(rs))
	for i, r := range rs {
		out[i] = layers.HistoryRule{Group: r.Group, Size: r.Size}
		if r.TTL != nil {
			out[i].TTL = r.TTL.Duration
		}
	}
	return out
}

// redisClient returns the client for a Redis URL, made (and pinged) once. Errors
// name the server without its password.
func (a *App) redisClient(ctx context.Context, u string) (rueidis.Client, error) {
	if c, ok := a.redis[u]; ok {
		return c, nil
	}
	c, _, err := redisconn.DialURL(ctx, u, nil)
	if err != nil {
		return nil, err
	}
	a.redis[u] = c
	return c, nil
}

// Serve serves sockets on ln (and health checks on admin, when not nil) until ctx
// ends, then shuts down: new handshakes get 503, open sockets close with 1001 and
// leave their groups, and Serve waits up to shutdown_timeout for them. It returns
// nil after a clean shutdown.
func (a *App) Serve(ctx context.Context, ln, admin net.Listener) error {
	busCtx, stopBuses := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, b := range a.buses {
		wg.Go(func() { b.run(busCtx) })
	}
	served := make(chan error, 2)
	go func() { served <- a.fiber.Listener(a.srv.Listener(ln)) }()
	var adminSrv *http.Server
	if admin != nil {
		adminSrv = &http.Server{Handler: a.admin.handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := adminSrv.Serve(admin); !errors.Is(err, http.ErrServerClosed) {
				served <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	a.log.Info("canal: listening", "addr", ln.Addr().String(), "routes", len(a.cfg.Routes), "layer", a.cfg.Layer.Backend)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	a.admin.health.Drain()
	a.log.Info("canal: shutting down", "conns", a.srv.Conns())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout.Duration)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		a.log.Warn("canal: shutdown timed out; remaining sockets dropped", "err", err)
	}
	// The sockets are gone (closed or dropped): what is left is quick, and gets its
	// own time even when the drain used all of shutdown_timeout.
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	if err := a.fiber.ShutdownWithContext(fctx); err != nil && serveErr == nil {
		serveErr = err
	}
	if adminSrv != nil {
		_ = adminSrv.Shutdown(fctx)
	}
	stopBuses()
	wg.Wait()
	a.close(fctx)
	a.log.Info("canal: stopped")
	return serveErr
}

func (a *App) close(ctx context.Context) {
	a.closed.Do(func() {
		if a.layer != nil {
			if err := a.layer.Close(ctx); err != nil {
				a.log.Warn("canal: layer close", "err", err)
			}
		}
		for _, c := range a.redis {
			c.Close()
		}
		if a.django != nil {
			a.django.http.CloseIdleConnections()
		}
	})
}

// Close releases what New opened, for an App that will not Serve.
func (a *App) Close() {
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = a.srv.Shutdown(ctx)
	}
	a.close(context.Background())
}
