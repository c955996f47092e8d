// Package history recovers what a client missed while it was away, from a group's
// history (canal.HistoryLayer: the layers of package layers, for groups their
// History rules name), without a gap or a duplicate across the switch to live
// messages.
//
// # The algorithm
//
// A client that reconnects gives the position (offset and epoch) of the last message
// it got. Its new connection, in another process perhaps:
//
//  1. makes a Recovery from that position and joins the group, passing every message
//     of the group to Recovery.Live. Until the catch-up is done, Live buffers them
//     (at most the buffer limit; past it they are dropped and read back from the
//     history);
//  2. calls Recovery.Catchup, which reads the history after the position, page by
//     page, up to the group's current position, and hands those messages to emit in
//     order; then the buffered live ones, skipping those it already emitted (offset
//     not past the last emitted); then switches to live: Live emits directly.
//  3. Live drops a message whose offset is not past the last emitted (a duplicate),
//     emits the next one, and on a gap (an offset further on: a live copy was
//     dropped, by a full queue or a Redis multi-host publish cut short) or a new
//     epoch returns false and buffers again: the caller runs Catchup again.
//
// Joining before reading the history is what closes the gap: a message published
// before the join is in the history the read returns; one published after it comes
// live (and maybe also in the history: a duplicate, dropped). The layers make that
// hold by appending to the history before they read the group's members (Memory) or
// by checking the members atomically with the append (Redis, one server).
//
// When the history no longer reaches back to the position (trimmed by size or age, or
// lost: another epoch), Catchup returns canal.ErrNotRecovered and goes on from the
// group's current position: the client must reload its state, and gets live messages
// from then on. A client without a position (zero epoch) starts at the current one.
package history
