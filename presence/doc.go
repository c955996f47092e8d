// Package presence tells who is in a channel-layer group: the users (ID, username, a
// chosen subset of their claims), how many connections each has there, and since
// when. consumer.Options.Presence records a consumer's connections in the groups they
// join; Presence reads a group from any process, and django_canal.presence reads it
// from Django.
//
// Two stores implement [Store]: [NewMemory] for one process (with layers.NewMemory)
// and [NewRedis] for many processes sharing a Redis (with layers.NewRedis or
// NewRedisPubSub, or on its own).
//
// # Redis keys
//
// Next to channels_redis' keys ("asgi:group:<group>" and the message queues, see
// package layers), the Redis store writes two kinds of key, under Prefix ("canal:"):
//
//   - <prefix>presence:<group>, a HASH with one field per connection in the group,
//     "<process>:<channel>" → {"at": <join time, Unix ms>, "id": "<user ID>",
//     "username": "...", "claims": {...}}, and one field per user, "#<user ID>" → the
//     number of that user's connection fields. Join and Leave are one Lua script on
//     this key each (HGET, HSET or HDEL, HINCRBY): O(1), atomic, in a Redis Cluster
//     too. The key expires KeyExpiry (24 h, channels_redis' group_expiry) after the
//     last join; it disappears at once when its last connection leaves.
//   - <prefix>presence.alive:<process>, a STRING set for Liveness (30 s) and
//     refreshed every third of it by each process with a store; Close deletes it.
//
// A crashed process leaves its fields behind, but not its liveness key: within
// Liveness, readers skip its fields and delete them (decrementing the user counts).
// A process whose key lapsed while it lived (Redis restarted or was flushed) writes
// its entries again at its next refresh. A crash sends no leave event.
//
// Reading a group (Presence) is one HGETALL, O(members), plus one EXISTS per process
// with members in it; see bench/ for a 10,000-member group.
package presence
