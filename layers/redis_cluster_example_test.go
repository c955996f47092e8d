package layers_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal/layers"
)

// A Go-only deployment on a Redis Cluster (Django cannot use one), told when Redis came
// back after an outage so that it can rebuild what a restart may have lost.
func ExampleNewRedis_cluster() {
	ctx := context.Background()
	rejoin := make(chan struct{}, 1)
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{
		Cluster: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}, // seeds
		ClientOptions: func(o *rueidis.ClientOption) {
			o.Password = "cluster password"
		},
		OnReconnect: func(host string, down time.Duration) {
			slog.Warn("Redis was unreachable; memberships may be lost", "host", host, "down", down)
			select {
			case rejoin <- struct{}{}: // the application re-adds its sockets to their groups
			default:
			}
		},
	})
	if err != nil {
		slog.Error("Redis Cluster unavailable", "err", err)
		return
	}
	defer layer.Close(ctx)
	_ = rejoin
}

// The same through Redis Sentinel, which Django's channels_redis (4.1 and later) can
// share with a hosts entry {"sentinels": [["10.0.0.1", 26379]], "master_name": "mymaster"}.
func ExampleNewRedis_sentinel() {
	ctx := context.Background()
	layer, err := layers.NewRedis(ctx, layers.RedisOptions{
		Sentinel: &layers.SentinelOptions{MasterSet: "mymaster", Addrs: []string{"10.0.0.1:26379"}},
	})
	if err != nil {
		slog.Error("Redis unavailable", "err", err)
		return
	}
	defer layer.Close(ctx)
}
