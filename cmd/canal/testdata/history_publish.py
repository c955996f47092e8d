"""Django's side of the recovery e2e test: django_canal.history.publish, as a
Django view or task would call it, with the REALTIME_HISTORY the canal server's
[[layer.history]] mirrors. Prints each message's position as "offset epoch".
Usage: history_publish.py REDIS_URL REALTIME_HISTORY_JSON GROUP TEXT..."""
import json
import sys

import django
from django.conf import settings

url, rules, group, texts = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4:]
settings.configure(
    CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}},
    REALTIME_HISTORY=rules,
)
django.setup()

from django_canal.history import publish  # noqa: E402 (needs the settings)

for text in texts:
    offset, epoch = publish(group, {"type": "feed.item", "text": text})
    print(offset, epoch)
