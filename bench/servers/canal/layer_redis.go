//go:build canal_redis_layer

package main

import (
	"context"
	"errors"
	"fmt"
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

// newRedisLayer returns that layer for kind "redis", and layers.NewRedisPubSub
// (channels_redis.pubsub's wire format) for kind "pubsub";
// cluster, when set, are the seed addresses of a Redis Cluster the layer uses instead
// of redisURL (W5: Cluster mode, Go publishers only, since channels_redis has none).
func newRedisLayer(kind, redisURL string, cluster []string) (canal.Layer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var hosts []string
	if len(cluster) == 0 {
		hosts = []string{redisURL}
	}
	hook := func(o *rueidis.ClientOption) { o.MaxFlushDelay = flushDelay }
	switch kind {
	case "redis":
		return layers.NewRedis(ctx, layers.RedisOptions{Hosts: hosts, Cluster: cluster, ClientOptions: hook})
	case "pubsub":
		return layers.NewRedisPubSub(ctx, layers.RedisPubSubOptions{Hosts: hosts, Cluster: cluster, ClientOptions: hook})
	}
	return nil, fmt.Errorf("layer %q: want redis or pubsub", kind)
}
