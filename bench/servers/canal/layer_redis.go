//go:build canal_redis_layer

package main

import (
	"context"
	"errors"
	"time"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/layers"
)

// bench/run.sh selects this file (-tags canal_redis_layer) when layers/ defines
// NewRedis. If it does not compile, the build fails and run.sh stops naming this file:
// adapt the one call below to the layer's API.
//
// The layer is the core backend (channels_redis.core.RedisChannelLayer's wire format)
// with Channels' defaults: prefix "asgi", capacity 100, expiry 60 s, on the same Redis
// as the tickets and the publisher. It keeps its own connections (the ticket client is
// not shared), as a Django deployment's layer does.
const redisLayerBuilt = true

var errLayerPending = errors.New("unreachable: the Redis layer is built in")

func newRedisLayer(_ rueidis.Client, redisURL string) (canal.Layer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return layers.NewRedis(ctx, layers.RedisOptions{
		Hosts:         []string{redisURL},
		ClientOptions: func(o *rueidis.ClientOption) { o.MaxFlushDelay = flushDelay },
	})
}
