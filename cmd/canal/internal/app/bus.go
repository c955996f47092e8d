package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
	"github.com/canal-rt/canal/cmd/canal/internal/expr"
	"github.com/canal-rt/canal/internal/ratelog"
	"github.com/canal-rt/canal/layers"
)

// Bus bounds.
const (
	// MaxBusMessage is the largest bus message delivered; larger ones are dropped
	// (a socket's read limit on the browser side is no help once it is sent).
	MaxBusMessage = 1 << 20
	// maxBusGroups bounds the groups one bus message may name (a list field).
	maxBusGroups  = 256
	busBackoffMin = 100 * time.Millisecond
	busBackoffMax = 5 * time.Second
)

// bus reads one raw Redis Pub/Sub channel of JSON objects (the websockets guide's
// "events") and hands each message, as published, to this process's members of the
// group its fields name. Every canal process subscribes, and each delivers to its
// own sockets only.
type bus struct {
	cfg    config.Bus
	client rueidis.Client
	local  *localLayer
	log    *slog.Logger
	logs   ratelog.Limiter

	delivered, dropped atomic.Uint64
	subscribed, down   atomic.Bool
}

// run subscribes until ctx ends, resubscribing after a lost connection with a
// backoff from 100 ms to 5 s (one log line per outage).
func (b *bus) run(ctx context.Context) {
	backoff := busBackoffMin
	for ctx.Err() == nil {
		hooked := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
			if s.Kind == "subscribe" {
				b.subscribed.Store(true)
				if b.down.Swap(false) {
					b.log.Info("bus: subscribed again", "channel", b.cfg.Channel)
				}
			}
		})
		err := b.client.Receive(hooked, b.client.B().Subscribe().Channel(b.cfg.Channel).Build(), b.handle)
		b.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		if !b.down.Swap(true) {
			b.log.Warn("bus: subscription lost, retrying", "channel", b.cfg.Channel, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, busBackoffMax)
		if err == nil {
			backoff = busBackoffMin
		}
	}
}

func (b *bus) handle(msg rueidis.PubSubMessage) {
	payload := []byte(msg.Message)
	groups, err := b.groups(payload)
	if err != nil {
		b.dropped.Add(1)
		b.logs.Log(b.log, slog.LevelWarn, "bus:"+err.Error(), "bus: message dropped", "channel", b.cfg.Channel, "err", err)
		return
	}
	// One Message for every member: the consumer's frame memo sees the same map and
	// sends the same bytes to all of them.
	m := canal.Message{"type": config.BusType, "raw": payload}
	for _, g := range groups {
		b.local.publishLocal(g, m)
	}
	b.delivered.Add(1)
}

var (
	errBusTooBig  = errors.New("over 1 MiB")
	errBusNotJSON = errors.New("not a JSON object in UTF-8")
)

// groups returns the groups a message goes to. The error never quotes the message.
func (b *bus) groups(payload []byte) ([]string, error) {
	if len(payload) > MaxBusMessage {
		return nil, errBusTooBig
	}
	if !utf8.Valid(payload) {
		return nil, errBusNotJSON
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil || fields == nil || dec.More() {
		return nil, errBusNotJSON
	}
	names, err := b.cfg.GroupTemplate.Expand(expr.Fields(fields), maxBusGroups)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if layers.ValidGroupName(n) != nil {
			return nil, errors.New("group template makes an invalid group name")
		}
	}
	return names, nil
}
