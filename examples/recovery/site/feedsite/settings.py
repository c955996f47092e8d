"""The Django side of examples/recovery: a page that reads a feed through canal.js,
and a publisher (feedsite.publish) that writes to it with history."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "recovery-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_canal",
    "feedsite",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "feedsite.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("FEED_DB", os.path.join(os.path.dirname(__file__), "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# The Go servers' channel layer (layers.NewRedis): same Redis, same prefix.
CHANNEL_LAYERS = {
    "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}},
}
# Tickets for the sockets (django_canal's /realtime/ticket/), in the same Redis.
REALTIME_TICKET_REDIS_URL = REDIS_URL
# The same rules as the Go servers' layers.HistoryRule (app.go).
REALTIME_HISTORY = [
    {"group": "feed_*", "size": 1000, "ttl": 600},
    {"group": "short_*", "size": 10, "ttl": 600},
]

# Where the page finds the Canal server (canal.js and the sockets).
CANAL_URL = os.environ.get("CANAL_URL", "http://127.0.0.1:8001")
# The demo signs every visitor in as "reader"; never set it on a real site.
FEED_DEMO_LOGIN = os.environ.get("FEED_DEMO_LOGIN") == "1"
