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
// The same consumer serves Server-Sent Events streams when the server has
// Options.EventStreams (Scope.Type "sse"): everything works but the Receive hooks,
// since a stream's client cannot send.
package consumer
