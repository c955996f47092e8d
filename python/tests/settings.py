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


def _drf_imports():
    # Debian bookworm's DRF and simplejwt sit beside the Django under test; on a
    # Django they cannot import under, the tests check that /auth/ answers
    # "kind not available" for their kinds (tests/test_auth.py).
    try:
        import rest_framework.authtoken  # noqa: F401
        import rest_framework_simplejwt  # noqa: F401
    except Exception:
        return False
    return True


DRF = _drf_imports()
if DRF:
    INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken"]

# Django's backend, and one of django-sesame's shape: authenticate(request, sesame).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "tests.backends.SesameShapedBackend",
    "tests.backends.SignedTokenBackend",
]

# Every built-in kind, and a backend kind of the site's own.
REALTIME_AUTH_KINDS = {
    "session": {},
    "drf": {},
    "simplejwt": {},
    "sesame": {},
    "signed": {"type": "backend", "kwarg": "signed_token"},
}

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

# In memory for runtests.py; a file when a Go test serves this project with
# runserver (one connection per thread), see canaltest.StartDjango.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CANAL_TEST_DB", ":memory:"),
    }
}
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

# Unset for runtests.py (tests set it with override_settings); set by a Go test
# that serves this project (canaltest.StartDjangoTests).
REALTIME_SESSION_TOKEN = os.environ.get("CANAL_TEST_SESSION_TOKEN") or None

# The tests point REALTIME_TICKET_REDIS at their own redis-server.
REALTIME_TICKET_EXPIRE = 10
REALTIME_TICKET_CLAIMS = "tests.claims.extra_claims"
