"""Settings of the article's project, TokenAuth.

The article's settings, minus what the Go server takes over: no
ASGI_APPLICATION and no consumers (the sockets are Canal's), no
django-cors-headers (the page and its API share Django's origin; WebSockets
are not subject to CORS). Plus django_canal, whose POST /auth/ lets the Go
server ask who a token belongs to, and, for the websockets guide's event
stream, the admin and a channels_redis CHANNEL_LAYERS shared with Canal.

From the environment, with defaults that are safe on 127.0.0.1:

    DJANGO_SECRET_KEY     signing key (simplejwt's too); random per process when unset
    CANAL_SESSION_TOKEN   the secret the Go server presents at /auth/ (at least
                          32 characters); unset: /auth/ answers 404
    CANAL_WS_URL          the Go server as the browser reaches it; default ws://127.0.0.1:8001
    REDIS_URL             the channel layer shared with the Go server; default
                          redis://127.0.0.1:6379/0
    TOKEN_AUTH_DB         the SQLite file; default db.sqlite3 beside manage.py
    DJANGO_DEBUG          "1" for Django's debug pages
"""

import os
import sys
from pathlib import Path

from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

# django_canal from the repository's python/ directory (manage.py does the same).
CANAL_PYTHON = BASE_DIR.parents[2] / "python"
if CANAL_PYTHON.is_dir() and str(CANAL_PYTHON) not in sys.path:
    sys.path.insert(0, str(CANAL_PYTHON))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
DEBUG = os.environ.get("DJANGO_DEBUG", "") in ("1", "true")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",  # the guide's events are the admin's changes
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",  # the article's Token model
    "django_canal",  # POST /auth/ for the Go server
    "token_auth_app.apps.TokenAuthAppConfig",
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

ROOT_URLCONF = "TokenAuth.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
        "NAME": os.environ.get("TOKEN_AUTH_DB") or str(BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# The API authenticates by token only (sessions are the admin's): no CSRF
# dance for the page's fetch calls.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
}

# django-sesame's settings, for the backend of its shape in token_auth_app.sesame
# (django-sesame itself is not packaged for Debian): tokens live 30 seconds, as
# in the websockets guide.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "token_auth_app.sesame.ModelBackend",
]
SESAME_MAX_AGE = 30

# django_canal: the credential kinds the Go server may ask about, its secret,
# and what /auth/ says about a user besides id and username.
REALTIME_AUTH_KINDS = ["drf", "simplejwt", "sesame"]
REALTIME_SESSION_TOKEN = os.environ.get("CANAL_SESSION_TOKEN") or None
REALTIME_TICKET_CLAIMS = "token_auth_app.claims.user_claims"

CANAL_WS_URL = os.environ.get("CANAL_WS_URL", "ws://127.0.0.1:8001")

# The websockets guide's event bus, as Channels' channel layer: Django's
# group_send("events", ...) reaches the Go server's sockets (same Redis, same
# default prefix).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")]},
    },
}
