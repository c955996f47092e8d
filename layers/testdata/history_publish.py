"""Publish to a group with history from Django (django_canal.history.publish).

    history_publish.py <redis url> <CONFIG json> <group> <n>

CONFIG is channels_redis' CONFIG plus "history" (REALTIME_HISTORY). Publishes
n events {"type": "chat.message", "n": i, "blob": bytes} and prints each
position as a JSON line [offset, epoch].
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

url, config, group, n = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rules = config.pop("history")
config["hosts"] = [url]
settings.configure(
    CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}},
    REALTIME_HISTORY=rules,
    INSTALLED_APPS=["channels"],
)
django.setup()

from django_canal.history import publish  # noqa: E402

for i in range(n):
    offset, epoch = publish(group, {"type": "chat.message", "n": i, "blob": b"\x00\xff"})
    print(json.dumps([offset, epoch]), flush=True)
