package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/canal-rt/canal/metrics"
)

// admin is what the admin listener serves: Prometheus metrics at /metrics, and the
// health checks at /healthz (the process runs) and /readyz (every Redis answers
// PING, every bus is subscribed, and the server is not draining).
type admin struct {
	metrics *metrics.Metrics
	health  *metrics.Health
}

// newAdmin makes the metrics (set as the server's Observer before the server is
// made) and the health checks.
func (a *App) newAdmin() (*admin, error) {
	m, err := metrics.New(metrics.Options{})
	if err != nil {
		return nil, err
	}
	var checks []metrics.Check
	n := 0
	for _, c := range a.redis {
		n++
		name := "redis"
		if len(a.redis) > 1 {
			name = fmt.Sprintf("redis-%d", n) // never the URL: it may hold a password
		}
		checks = append(checks, metrics.Check{Name: name, Func: func(ctx context.Context) error {
			return c.Do(ctx, c.B().Ping().Build()).Error()
		}})
	}
	if len(a.buses) > 0 {
		checks = append(checks, metrics.Check{Name: "bus", Func: func(context.Context) error {
			for _, b := range a.buses {
				if !b.subscribed.Load() {
					return errors.New("bus " + b.cfg.Channel + " not subscribed")
				}
			}
			return nil
		}})
	}
	h, err := metrics.NewHealth(metrics.HealthOptions{Checks: checks, Logger: a.log})
	if err != nil {
		return nil, err
	}
	return &admin{metrics: m, health: h}, nil
}

func (ad *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", ad.metrics.Handler())
	mux.Handle("GET /healthz", ad.health.Live())
	mux.Handle("GET /readyz", ad.health.Ready())
	return mux
}
