"""A Django project whose only job is a Channels worker: `runworker jobs` runs
JobConsumer on the channel canal forwards client messages to (receive mode
"worker")."""

import os

SECRET_KEY = "worker-test-only"
INSTALLED_APPS = ["channels"]
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "workersite.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
    }
}
# runworker says "Running worker for channels ['jobs']" at INFO once it listens.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.channels": {"handlers": ["console"], "level": "INFO"}},
}
