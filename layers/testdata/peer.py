"""A Django Channels peer for Canal's Redis layer interop tests.

    python3 peer.py <redis url> <json config>

config: {"backend": "core" | "pubsub", plus the layer's CONFIG: "prefix", "capacity",
"expiry", "group_expiry", "channel_capacity", "symmetric_encryption_keys",
"serializer_format", ...}. The layer comes from Django's settings and
channels.layers.get_channel_layer(), as in a Django project.

Then one JSON command per line on stdin, one JSON reply per line on stdout. Messages
travel as hex msgpack (use_bin_type=True), so Go sees exactly the Python types:

    {"op": "new_channel"}                         -> {"channel": name}
    {"op": "send", "channel": c, "msg": hex}      -> {"ok": true} | {"full": true}
    {"op": "group_send", "group": g, "msg": hex}  -> {"ok": true}
    {"op": "group_add" | "group_discard", "group": g, "channel": c} -> {"ok": true}
    {"op": "receive", "channel": c, "timeout": s} -> {"msg": hex, "repr": r} | {"timeout": true}
    {"op": "expect", "channel": c, "msg": hex, "timeout": s}
                         -> {"equal": bool, "repr": received, "want": expected} | {"timeout": true}
    {"op": "listen", "channel": c}                -> {"ok": true} (pubsub: subscribe now)
    {"op": "flush"}                               -> {"ok": true}
    {"op": "info"}                                -> versions and the process prefix
    {"op": "quit"}

Instead of "msg" a command may give "py", a Python literal (ast.literal_eval), so that
expectations do not depend on Canal's encoder.

send, group_send, group_add, group_discard and flush go through async_to_sync, like
Django views and management commands; receive runs on one long-lived event loop, like
a consumer.
"""

import ast
import asyncio
import json
import os
import sys

import django
from django.conf import settings


def main():
    url = sys.argv[1]
    config = (json.loads(sys.argv[2]) if len(sys.argv) > 2 else None) or {}
    backend = config.pop("backend", "core")
    config["hosts"] = config.get("hosts") or [url]
    if "channel_capacity" in config:
        config["channel_capacity"] = dict(config["channel_capacity"])
    settings.configure(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": {
                    "core": "channels_redis.core.RedisChannelLayer",
                    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
                }[backend],
                "CONFIG": config,
            }
        },
    )
    django.setup()

    import channels
    import channels_redis
    import msgpack
    from asgiref.sync import async_to_sync
    from channels.exceptions import ChannelFull
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    loop = asyncio.new_event_loop()

    def same(a, b):
        """Equal values of exactly the same types, recursively (1 != 1.0 != True)."""
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b

    def message(cmd):
        """The command's message: a Python literal ("py") or hex msgpack ("msg")."""
        if "py" in cmd:
            return ast.literal_eval(cmd["py"])
        return msgpack.unpackb(bytes.fromhex(cmd["msg"]), raw=False)

    def pack(m):
        return msgpack.packb(m, use_bin_type=True).hex()

    async def receive(channel, timeout):
        return await asyncio.wait_for(layer.receive(channel), timeout)

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "quit":
                reply({"ok": True})
                break
            elif op == "info":
                reply({
                    "channels": channels.__version__,
                    "channels_redis": getattr(channels_redis, "__version__", "?"),
                    "msgpack": ".".join(map(str, msgpack.version)),
                    "django": django.get_version(),
                    "client_prefix": getattr(layer, "client_prefix", None),
                })
            elif op == "new_channel":
                reply({"channel": loop.run_until_complete(layer.new_channel())})
            elif op == "send":
                try:
                    async_to_sync(layer.send)(cmd["channel"], message(cmd))
                    reply({"ok": True})
                except ChannelFull:
                    reply({"full": True})
            elif op == "group_send":
                async_to_sync(layer.group_send)(cmd["group"], message(cmd))
                reply({"ok": True})
            elif op == "group_add":
                if backend == "pubsub":  # membership lives in the receiving loop's layer
                    loop.run_until_complete(layer.group_add(cmd["group"], cmd["channel"]))
                else:
                    async_to_sync(layer.group_add)(cmd["group"], cmd["channel"])
                reply({"ok": True})
            elif op == "group_discard":
                if backend == "pubsub":
                    loop.run_until_complete(layer.group_discard(cmd["group"], cmd["channel"]))
                else:
                    async_to_sync(layer.group_discard)(cmd["group"], cmd["channel"])
                reply({"ok": True})
            elif op == "listen":  # pubsub: subscribe to a name before receiving on it
                async def listen(channel):
                    inner = layer._get_layer()
                    if channel not in inner.channels:
                        await inner._subscribe_to_channel(channel)

                loop.run_until_complete(listen(cmd["channel"]))
                reply({"ok": True})
            elif op == "flush":
                async_to_sync(layer.flush)()
                reply({"ok": True})
            elif op in ("receive", "expect"):
                try:
                    msg = loop.run_until_complete(receive(cmd["channel"], cmd.get("timeout", 5)))
                except asyncio.TimeoutError:
                    reply({"timeout": True})
                    continue
                if op == "receive":
                    reply({"msg": pack(msg), "repr": repr(msg)})
                else:
                    want = message(cmd)
                    reply({"equal": same(msg, want), "repr": repr(msg), "want": repr(want)})
            else:
                reply({"error": "unknown op " + op})
        except Exception as e:  # reported to the Go test, which fails
            reply({"error": "%s: %s" % (type(e).__name__, e)})


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Skip interpreter shutdown: closing redis clients of a stopped loop can hang.
    os._exit(0)
