// Package worker runs Go handlers for named channels of a channel layer: the Go
// side of Channels' runworker and ChannelNameRouter. Django code that does
//
//	async_to_sync(channel_layer.send)("thumbnails", {"type": "thumbnail.make", "id": 7})
//
// reaches a Go function, through the Redis layer of package layers
// (channels_redis' format), and the function can answer on any channel Django
// reads: a channel from channel_layer.new_channel(), or a consumer's
// self.channel_name, named in the request as "reply_channel" (Reply).
//
// The Channels worker
//
//	application = ProtocolTypeRouter({
//	    "channel": ChannelNameRouter({"thumbnails": ThumbnailConsumer.as_asgi()}),
//	})
//	class ThumbnailConsumer(AsyncConsumer):
//	    async def thumbnail_make(self, message): ...
//
// reads in Go as
//
//	w, err := worker.New(layer, worker.Channels{
//		"thumbnails": worker.Types{"thumbnail.make": makeThumbnail},
//	}, worker.Options{Concurrency: 8})
//	err = w.Run(ctx) // until ctx ends, then drains
//
// Channels routes names to handlers; Types dispatches by "type" as a consumer
// dispatches "thumbnail.make" to thumbnail_make. Any Handler (a HandlerFunc) may
// stand in for Types.
//
// # Concurrency and failures
//
// A Worker holds at most Options.Concurrency messages at once (default
// GOMAXPROCS): each channel's receive loop takes a free slot before it asks the
// layer for a message, and the slot is given back when the handler returns. So a
// busy worker leaves messages in Redis, where other worker processes take them,
// and a crash loses at most Concurrency messages. One slot of each channel is its
// own, so that a busy channel cannot starve the others. There is no order across
// concurrent handlers; Concurrency 1 with one channel handles messages in order.
//
// A handler's error is logged (the error, never the message) and counted in
// Stats().Failed; a panic is recovered, logged with its stack and counted in
// Stats().Panics; a type with no handler is logged and counted in
// Stats().Unhandled (Channels raises "No handler for message type" and loses the
// consumer instance). In every case the message is dropped, not retried, and the
// worker goes on. Log lines are rate-limited to one a second per channel and type.
//
// Receive errors (Redis unreachable: canal.ErrUnavailable) are counted in
// Stats().ReceiveErrors; the loop waits 50 ms, doubling up to Options.MaxBackoff
// (5 s), and resumes at the first receive that succeeds. A closed layer ends Run.
//
// Run stops receiving when its context ends and waits for running handlers, at
// most Options.DrainTimeout (10 s). Handlers' contexts are cancelled only then. Give
// Run a context from signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM) so
// that a deploy's SIGTERM drains instead of killing handlers mid-message.
//
// # Delivery guarantees (Redis layer)
//
// Channels' layers deliver at most once: the receiver pops a message from Redis
// (BZPOPMIN), and nothing acknowledges it after it was handled. This package keeps
// that contract; what it adds is that a message is not popped before a handler
// slot is free.
//
//	situation                                  | outcome
//	-------------------------------------------+---------------------------------------------------------------
//	several workers (processes) on a channel   | each message handled by exactly one of them
//	all of a worker's slots busy               | messages wait in Redis for any worker, up to the expiry (60 s)
//	handler returns an error or panics         | message dropped, counted (Failed, Panics); not retried
//	type with no handler                       | message dropped, counted (Unhandled), logged
//	worker killed (SIGKILL, OOM) mid-handler   | the messages it held are lost (at most Concurrency); the rest stay in Redis
//	worker killed between pop and hand-over    | backup in "<key>$inflight", put back by the next receiver after 10 s
//	graceful stop (Run's context ends)         | nothing new received; running handlers finish within DrainTimeout
//	Redis down                                 | Receive fails, backoff, resume; stored messages wait in Redis (gone if it restarts without persistence)
//	queue at capacity (100 by default)         | Django's send raises ChannelFull, Go's Send returns canal.ErrChannelFull; group_send skips it
//	nobody receives for Expiry (60 s)          | message expires, as in channels_redis
//
// The same holds for a Django worker, and it loses more: channels_redis' receive
// backs the popped message up in "<key>$inflight" but removes the backup as soon
// as receive returns, before the consumer handles it, and Channels' Worker
// (runworker) receives ahead of its consumer into an unbounded in-process queue.
// A Django worker killed while handling one message loses every message it had
// received meanwhile (5 of 5 in this package's interop test, where a Go worker
// with Concurrency 2 loses 2 and leaves 3 to the next worker).
//
// The Redis layer differs from channels_redis in the short window between pop and
// hand-over (package layers): a backup is restored only once it is 10 s old, so a
// live receiver's backup is never restored under it (channels_redis restores every
// backup, which can run a message twice), and in Redis Cluster mode the backup is a
// second command, so a receiver dying between the two loses that message.
//
// Work that must survive a crash needs its own record (a database row the handler
// marks done) and a sweeper that sends again.
//
// With layers.NewMemory, everything lives in the process: its exit loses every
// queued message.
package worker
