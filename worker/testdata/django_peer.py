"""Django's side of Canal's worker interop tests.

    python3 django_peer.py <mode> <redis url> <json CONFIG of CHANNEL_LAYERS> [arg]

The channel layer comes from Django's settings and get_channel_layer(), as in a
Django project (channels_redis.core.RedisChannelLayer). Modes print one JSON line:

  request <n>    Django code as in a view or a management command: make a channel with
                 new_channel(), async_to_sync(send)("thumbnails", {"type":
                 "thumbnail.make", "id": i, "reply_channel": ch}) for i < n, then
                 receive n replies on ch -> {"replies": [...]}
  consumer <id>  a Channels consumer (AsyncConsumer, run by asgiref's
                 ApplicationCommunicator as a server runs it) asks the Go worker with
                 its own self.channel_name as reply_channel; its thumbnail_done
                 handler gets the answer -> {"reply": {...}}
  send <json>    async_to_sync(send)("thumbnails", m) for each message of the JSON
                 list -> {"results": ["ok" | "full", ...]}
  serve          a Django worker, as `manage.py runworker emails` runs it: channels'
                 Worker with ChannelNameRouter({"emails": EmailConsumer}). It prints
                 {"ready": true}, then "held <id>" for each "email.hold" it starts
                 (that handler never returns), and answers "email.send" on the
                 message's reply_channel. It runs until killed.
"""

import asyncio
import json
import os
import sys

import django
from django.conf import settings

TIMEOUT = 20  # seconds, on every wait


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    mode, url = sys.argv[1], sys.argv[2]
    config = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    arg = sys.argv[4] if len(sys.argv) > 4 else None
    config["hosts"] = [url]
    settings.configure(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}},
    )
    django.setup()

    from asgiref.sync import async_to_sync
    from channels.exceptions import ChannelFull
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    if mode == "request":
        n = int(arg)

        async def new_channel():
            return await layer.new_channel()

        ch = async_to_sync(new_channel)()
        for i in range(n):
            async_to_sync(layer.send)("thumbnails", {"type": "thumbnail.make", "id": i, "reply_channel": ch})

        async def replies():
            return [await asyncio.wait_for(layer.receive(ch), TIMEOUT) for _ in range(n)]

        out({"replies": async_to_sync(replies)()})

    elif mode == "consumer":
        from asgiref.testing import ApplicationCommunicator
        from channels.consumer import AsyncConsumer

        class Requester(AsyncConsumer):
            async def thumbnail_request(self, event):
                await self.channel_layer.send(
                    "thumbnails",
                    {"type": "thumbnail.make", "id": event["id"], "reply_channel": self.channel_name},
                )

            async def thumbnail_done(self, event):
                await self.send({"type": "result", "reply": event})

        async def run():
            comm = ApplicationCommunicator(Requester.as_asgi(), {"type": "requester"})
            await comm.send_input({"type": "thumbnail.request", "id": int(arg)})
            result = await comm.receive_output(TIMEOUT)
            try:
                await comm.wait(0.1)  # a consumer runs until cancelled: this cancels it
            except asyncio.TimeoutError:
                pass
            return result

        out(asyncio.run(run()))

    elif mode == "send":
        results = []
        for m in json.loads(arg):
            try:
                async_to_sync(layer.send)("thumbnails", m)
                results.append("ok")
            except ChannelFull:
                results.append("full")
        out({"results": results})

    elif mode == "serve":
        from channels.consumer import AsyncConsumer
        from channels.routing import ChannelNameRouter
        from channels.worker import Worker

        class EmailConsumer(AsyncConsumer):
            async def email_send(self, message):
                await self.channel_layer.send(message["reply_channel"], {"type": "email.sent", "id": message["id"]})

            async def email_hold(self, message):
                sys.stdout.write("held %d\n" % message["id"])
                sys.stdout.flush()
                await asyncio.Event().wait()

        application = ChannelNameRouter({"emails": EmailConsumer.as_asgi()})
        worker = Worker(application=application, channels=["emails"], channel_layer=layer)
        out({"ready": True})
        worker.run()

    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Skip interpreter shutdown: closing redis clients of a finished loop can hang.
    os._exit(0)
