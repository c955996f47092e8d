import json

from asgiref.sync import async_to_sync
from channels.consumer import SyncConsumer


class JobConsumer(SyncConsumer):
    """What a site's worker does with a client message canal forwarded: the work
    (with the ORM, in a real site), then a reply to the socket's channel."""

    def job_submit(self, message):
        reply = {
            "double": message["size"] * 2,
            "by": message["sender"]["username"],
            "job": message["route"]["job"],
            "types": [type(message["size"]).__name__, type(message["route"]["job"]).__name__],
        }
        async_to_sync(self.channel_layer.send)(
            message["reply_channel"], {"type": "websocket.send", "text": json.dumps(reply, sort_keys=True)}
        )
