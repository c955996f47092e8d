"""The benchmark consumer, written the way the Channels tutorial writes consumers.

Same behaviour as Canal's (bench/servers/canal) and the baseline's:
  connect    refuse without a user (403); join group "bench"; accept;
             send {"type": "hello", "user": <username>}
  receive    echo the JSON object back
  group      "bench.message" events become {"type": "group", "seq", "ts", "text"}
  stress     users named "stall-…" (bench/run.sh --stress: clients that stop reading)
             also join "bench-stall", the group of the stream meant to overflow them
"""
from channels.generic.websocket import AsyncJsonWebsocketConsumer

GROUP = "bench"
STALL_GROUP, STALL_PREFIX = "bench-stall", "stall-"


class BenchConsumer(AsyncJsonWebsocketConsumer):
    joined = False
    stalled = False

    async def connect(self):
        user = self.scope.get("user")
        if not user:
            await self.close()
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True
        if user["username"].startswith(STALL_PREFIX):
            await self.channel_layer.group_add(STALL_GROUP, self.channel_name)
            self.stalled = True
        await self.accept()
        await self.send_json({"type": "hello", "user": user["username"]})

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(GROUP, self.channel_name)
        if self.stalled:
            await self.channel_layer.group_discard(STALL_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        await self.send_json(content)

    async def bench_message(self, event):
        await self.send_json(
            {"type": "group", "seq": event["seq"], "ts": event["ts"], "text": event["text"]}
        )
