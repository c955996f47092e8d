"""Minimal Django project for testing django_canal (see ../runtests.py)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "canal-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_canal",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(HERE, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    }
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins
USE_TZ = True

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/chat/"

# django_canal's warnings (Redis down is tested on purpose) stay out of the
# test output; they still propagate, so tests can capture them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_canal": {"handlers": ["null"], "propagate": True}},
}

# The tests point REALTIME_TICKET_REDIS at their own redis-server.
REALTIME_TICKET_EXPIRE = 10
REALTIME_TICKET_CLAIMS = "tests.claims.extra_claims"
