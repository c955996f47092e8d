"""Settings of the notifications example: the websockets guide's Django site.

From the environment, with defaults that run on 127.0.0.1:

    DJANGO_SECRET_KEY   signing key; a random one per process when unset
    REDIS_URL           tickets and the "events" bus; default redis://127.0.0.1:6379/0
    CANAL_WS_URL        the canal server's WebSocket base URL; default ws://127.0.0.1:8001
    GUIDE_DB            SQLite file; default site/db.sqlite3
    CANAL_SESSION_TOKEN the secret canal's [auth.session] sends to POST /session/;
                        unset: the endpoint is off (tickets only)
"""

import os
import sys
from pathlib import Path

from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent  # examples/notifications/site

CANAL_PYTHON = BASE_DIR.parents[2] / "python"
if CANAL_PYTHON.is_dir() and str(CANAL_PYTHON) not in sys.path:
    sys.path.insert(0, str(CANAL_PYTHON))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_canal",  # POST /ticket/
    "news",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "guide.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("GUIDE_DB") or str(BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# The admin's login form is the site's: the events page is for staff.
LOGIN_URL = "/admin/login/"
CSRF_COOKIE_HTTPONLY = False  # the page's JavaScript reads it for POST /ticket/

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CANAL_WS_URL = os.environ.get("CANAL_WS_URL", "ws://127.0.0.1:8001").rstrip("/")

# django_canal: tickets in Redis, carrying the content types the user may see
# (the guide's get_content_types, computed once per connection as the guide does).
REALTIME_TICKET_REDIS = REDIS_URL
REALTIME_TICKET_CLAIMS = "news.claims.ticket_claims"
# Optional: canal may authenticate the session cookie instead, when it serves on
# this site's host name (docs/deploy.md). The same claims come with the user.
REALTIME_SESSION_TOKEN = os.environ.get("CANAL_SESSION_TOKEN") or None

# Better than the guide: permissions granted or revoked in the admin reach open
# sockets. django_canal's signals push the user's fresh claims (the content types
# above) through the channel layer canal shares, and canal moves the socket between
# its ct_ groups without a reconnect.
REALTIME_USER_SIGNALS = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}
