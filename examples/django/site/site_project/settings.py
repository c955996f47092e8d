"""Settings of the Canal demo site.

Everything that differs between a laptop and a server comes from the
environment, with defaults that are safe to run on 127.0.0.1:

    DJANGO_SECRET_KEY       signing key; a random one per process when unset
                            (sessions then end when the server restarts)
    DJANGO_DEBUG            "1"/"true" for Django's debug pages; default off
    DJANGO_ALLOWED_HOSTS    comma-separated; default 127.0.0.1,localhost
    CANAL_DEMO_DB           SQLite file; default site/db.sqlite3
    REDIS_URL               where tickets go, and the channel layer the Go
                            server shares; default redis://127.0.0.1:6379/0
    REALTIME_TICKET_EXPIRE  ticket lifetime in seconds; default 10
    CANAL_WS_URL            the Go server's WebSocket base URL; default ws://127.0.0.1:8001
    CANAL_SESSION_TOKEN     shared secret that lets the Go server resolve session
                            cookies at POST /session/; unset: cookie login off
"""

import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent  # examples/django/site

# django_canal from the repository's python/ directory (manage.py does the
# same; this covers wsgi.py and other entry points).
CANAL_PYTHON = BASE_DIR.parents[1] / "python"
if CANAL_PYTHON.is_dir() and str(CANAL_PYTHON) not in sys.path:
    sys.path.insert(0, str(CANAL_PYTHON))


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",  # /admin/, with the "disconnect" action on users
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",  # the admin's "Disconnected 1 user(s)" message
    "django.contrib.staticfiles",  # the admin's CSS, with DJANGO_DEBUG=1
    "django_canal",  # POST /ticket/, realtime.disconnect_user, realtime.presence
    "demo",
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

ROOT_URLCONF = "site_project.urls"
WSGI_APPLICATION = "site_project.wsgi.application"

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
        "NAME": os.environ.get("CANAL_DEMO_DB") or str(BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# The page's JavaScript reads the CSRF token from this cookie, as Django's
# documentation describes, so it must not be HttpOnly (the default).
CSRF_COOKIE_HTTPONLY = False

# --- Canal -----------------------------------------------------------------

# django_canal writes tickets here; the Go server reads them from the same Redis.
REALTIME_TICKET_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REALTIME_TICKET_EXPIRE = env_int("REALTIME_TICKET_EXPIRE", 10)

# Session-cookie login on the Go server (middleware.Session): it posts the
# visitor's sessionid to /session/ with this secret. Unset = endpoint off.
REALTIME_SESSION_TOKEN = os.environ.get("CANAL_SESSION_TOKEN") or None

# Close a user's sockets on every Go server when Django changes what they may
# do: at logout (4403 "logged out"), when the password changes or is_active is
# turned off (django_canal.signals). The page goes to the login page on
# "logged out".
REALTIME_USER_SIGNALS = True

# Where the browser opens its sockets: the Go server, not Django.
CANAL_WS_URL = os.environ.get("CANAL_WS_URL", "ws://127.0.0.1:8001").rstrip("/")


def _with_timeouts(url, connect=2, read=10):
    """url with redis-py's socket timeouts in its query string (unless it has
    them), so that a view talking to a dead Redis fails in seconds instead of
    the OS's TCP timeouts; channels_redis passes the URL to redis-py as is. The
    read timeout stays above channels_redis' 5 s BZPOPMIN (brpop_timeout), which
    consumers running in Django would block in."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", str(connect))
    query.setdefault("socket_timeout", str(read))
    return urlunsplit(parts._replace(query=urlencode(query)))


# Django reaches the Go server's sockets through the channel layer, as in any
# Channels project: the Go server runs layers.NewRedis on the same Redis with
# channels_redis' defaults (prefix "asgi"), so group_send("user_1", ...) here
# reaches the Go consumers in the group "user_1". Channels needs no entry in
# INSTALLED_APPS for this: get_channel_layer() reads CHANNEL_LAYERS.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [_with_timeouts(REALTIME_TICKET_REDIS)]},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "demo": {"handlers": ["console"], "level": "INFO"},
        "django_canal": {"handlers": ["console"], "level": "WARNING"},
    },
}
