// Package layers holds channel-layer implementations of canal.Layer:
//
//   - NewMemory: in-process, the embedded default for demos, tests and single-process servers.
//   - NewRedis: Redis through rueidis, wire-compatible with channels_redis, so Django's
//     group_send reaches Go consumers and back.
//
// All of them follow Channels' semantics: names of at most 99 characters, capacity per
// channel (100 by default, with per-pattern overrides), ChannelFull from Send only,
// GroupSend skipping full members, message expiry 60 s and group expiry 24 h.
package layers
