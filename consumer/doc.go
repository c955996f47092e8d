// Package consumer gives Canal the consumers of Django Channels: one value per
// connection with Connect, Receive / ReceiveJSON and Disconnect hooks, groups joined
// and left for you, and layer events dispatched by their "type".
//
// A Channels consumer
//
//	class Chat(AsyncJsonWebsocketConsumer):
//	    async def connect(self):
//	        self.room = "chat_" + self.scope["url_route"]["kwargs"]["room"]
//	        await self.channel_layer.group_add(self.room, self.channel_name)
//	        await self.accept()
//	    async def receive_json(self, content):
//	        await self.channel_layer.group_send(self.room, {"type": "chat.message", "text": content["text"]})
//	    async def chat_message(self, event):
//	        await self.send_json({"text": event["text"]})
//
// reads in Go as the Chat type of this package's example. The differences are
// deliberate: event handlers are registered by type in Options.Events instead of found
// by method name, groups joined with GroupAdd are left automatically, and bad input
// (invalid JSON, binary frames) closes with a documented code instead of crashing.
//
// # What closes a connection, and what does not
//
// A hook's error closes its connection: with a *canal.CloseError's code, else 1011,
// as an exception does in Channels. Layer events are the exception to the rule when
// the message, not the connection, is at fault, because one group message reaches
// every member and must not close them all:
//
//   - A FrameFunc (Options.Frames) that fails, such as a JSONFrame given NaN or ±Inf
//     (msgpack and channels_redis carry them; JSON cannot): the message is skipped
//     for every member, counted once in Handler.Stats().BadFrames and logged once
//     (event type and error, never the message).
//   - An event handler (Options.Events, or the Event method) that returns an error
//     wrapping ErrEncode, which SendJSON returns for a value JSON cannot hold: that
//     event is dropped for that connection, counted in Stats().BadEvents and logged.
//     Wrap it in a *canal.CloseError to close instead.
//   - An event with no handler: dropped, counted in Stats().Unhandled.
//
// These log lines are rate-limited to one per event type and second, with the
// number held back in the next line. Other errors (canal.ErrClosed from a send, a
// handler's own error) still close: they say the connection is broken or the
// application chose to end it.
//
// Outgoing JSON (SendJSON, JSONFrame) is UTF-8 as written: <, > and & are not
// \u-escaped, and there is no trailing newline.
//
// Disconnect runs once for every connection whose Connect hook ran, after the groups
// are left: with 1006 when Connect refused (canal.Reject, or any error before the
// accept; Channels calls disconnect(1006) after DenyConnection too), and with the
// close code when Connect failed after accepting: canal.CloseFor's (a *canal.CloseError's
// code; 4000+status for a canal.Reject 4xx, 1013 for 503; else 1011), which is also the
// code the client sees, from the server or after a first-message credential.
//
// # Users: addressing, refresh and presence
//
// Every authenticated connection joins its user's group, UserGroup(Scope.User.ID)
// ("canal.user.42"), in whichever process serves it (Options.NoUserGroup opts out).
// Anything that can group_send on the layer therefore reaches all of a user's
// sockets: DisconnectUser closes them (4403 unless told otherwise), SendToUser sends
// them an ordinary event, RefreshUser replaces their user. Django does the same with
// django_canal.realtime over plain channels_redis. Two event types are reserved and
// handled before Options.Events: EventDisconnect and EventRefresh.
//
// A refresh changes Scope.User between two hooks, atomically (canal.Scope.SetUser),
// updates the connection's presence entries, then runs the UserChanged hook, so a
// consumer that checks permissions at each event follows a permission change without
// a reconnect. Hooks read the user with Conn.User (or Scope().User); goroutines of
// their own read Scope().CurrentUser().
//
// With Options.Presence (package presence), the connection is recorded in each group
// it joins once Connect has returned, and removed when it leaves; PresenceEvents
// announces a user's first join and last leave to the group's members.
//
// With Options.MaxAge, a connection lives on one credential for that long: then the
// consumer asks the client for a fresh one in-band ({"type": "canal.reauth"}) and
// closes with 4401 unless Options.Reauthorize accepts one for the same user within
// ReauthGrace (EventReauth shows both sides of the exchange).
//
// # Nothing lost across a reconnect
//
// With Options.Recover naming groups that keep a history (layers' HistoryRule), each
// message of those groups tells the client its position, and a client that reconnects
// with its last positions (the "recover" query parameter; canal.js does it) gets what
// it missed, in order, then the live messages, without a gap or a duplicate, from any
// process; or a {"type": "canal.recover", "recovered": false} frame when the history
// no longer reaches back. EventRecover documents the wire.
//
// A live message lost on the way shows as a gap when the group's next message comes;
// the last one before a quiet period has none after it, so a position check
// (Options.RecoverCheck, every 30 s by default) compares each recovered group's
// position in its history with each connection's, and catches up those behind. It
// costs one read per group and interval in each process, however many connections
// are in the group, and runs on one goroutine per Handler, only while it has
// recovered connections (DefaultRecoverCheck has the details).
//
// The same consumer serves Server-Sent Events streams when the server has
// Options.EventStreams (Scope.Type "sse"): everything works but the Receive hooks,
// since a stream's client cannot send.
package consumer
