"""Settings of the benchmark's Django Channels peer.

Environment:
  BENCH_REDIS_URL  the benchmark's private Redis (tickets and channel layer)
  BENCH_LAYER      "core" (channels_redis.core.RedisChannelLayer, the default backend)
                   or "pubsub" (channels_redis.pubsub.RedisPubSubChannelLayer)
"""
import os

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LAYER = os.environ.get("BENCH_LAYER", "core")

_BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
if LAYER not in _BACKENDS:
    raise RuntimeError("BENCH_LAYER must be core or pubsub, not %r" % LAYER)

SECRET_KEY = "bench-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = []
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "benchpeer.asgi.application"

# Channels' defaults otherwise: prefix "asgi", capacity 100, expiry 60 s, as Canal's
# Redis layer mirrors them.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _BACKENDS[LAYER],
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# The ticket format of django_canal (python/README.md): key prefix + sha256 hex.
REALTIME_TICKET_PREFIX = "canal:ticket:"

# Warnings and errors only: an access log per connection would cost the peer CPU that
# Canal and the baseline do not spend.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
