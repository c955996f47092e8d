"""Settings for django_canal, read lazily from django.conf.settings.

Nothing here is read at import time: tests (and sites) change settings with
override_settings, and the Redis client is cached per configuration value so
a change always takes effect on the next ticket.
"""

import json
import threading

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

DEFAULT_EXPIRE = 10
DEFAULT_PREFIX = "canal:ticket:"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# A ticket is issued inside a page request: a Redis that is down must cost
# the request about a second, not the OS's TCP timeouts.
DEFAULT_SOCKET_TIMEOUT = 1


def expire():
    value = getattr(settings, "REALTIME_TICKET_EXPIRE", DEFAULT_EXPIRE)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            "REALTIME_TICKET_EXPIRE must be a positive integer (seconds), got %r" % (value,)
        )
    return value


def prefix():
    value = getattr(settings, "REALTIME_TICKET_PREFIX", DEFAULT_PREFIX)
    if not isinstance(value, str):
        raise ImproperlyConfigured("REALTIME_TICKET_PREFIX must be a string")
    return value


def session_token():
    """REALTIME_SESSION_TOKEN: the secret the Go server sends to the
    credential endpoints (/auth/ and /session/), or None when they are off
    (the default)."""
    value = getattr(settings, "REALTIME_SESSION_TOKEN", None)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) < 32:
        raise ImproperlyConfigured(
            "REALTIME_SESSION_TOKEN must be a string of at least 32 characters "
            "(e.g. secrets.token_urlsafe(32))"
        )
    return value


def seed_errors():
    """REALTIME_TICKET_SEED_ERRORS: answer a ticket that cannot be issued
    (anonymous user, Redis down) as django-realtime-ticket did, with 200
    {"status": "error", "message": ...}, instead of 403/503."""
    value = getattr(settings, "REALTIME_TICKET_SEED_ERRORS", False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured("REALTIME_TICKET_SEED_ERRORS must be True or False")
    return value


def claims_hook():
    """The REALTIME_TICKET_CLAIMS callable (or None): f(user, request) -> dict."""
    hook = getattr(settings, "REALTIME_TICKET_CLAIMS", None)
    if hook is None:
        return None
    if isinstance(hook, str):
        try:
            hook = import_string(hook)
        except ImportError as exc:
            raise ImproperlyConfigured("REALTIME_TICKET_CLAIMS: %s" % exc) from exc
    if not callable(hook):
        raise ImproperlyConfigured("REALTIME_TICKET_CLAIMS must be a callable or its dotted path")
    return hook


def redis_config():
    """Normalised Redis configuration: ("url", url) or ("kwargs", dict).

    REALTIME_TICKET_REDIS (URL string or the seed's dict) wins over
    REALTIME_TICKET_REDIS_URL; the default is a local Redis, database 0.
    """
    value = getattr(settings, "REALTIME_TICKET_REDIS", None)
    if value is None:
        value = getattr(settings, "REALTIME_TICKET_REDIS_URL", None) or DEFAULT_REDIS_URL
    if isinstance(value, str):
        return ("url", value)
    if isinstance(value, dict):
        return ("kwargs", dict(value))
    raise ImproperlyConfigured(
        "REALTIME_TICKET_REDIS must be a URL string or a dict of redis.Redis arguments"
    )


def _client_options():
    options = {
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT,
        "socket_connect_timeout": DEFAULT_SOCKET_TIMEOUT,
    }
    try:
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:  # redis-py < 4.1 has no retry policy and retries nothing
        pass
    else:
        # redis-py 6 retries 3 times with up to 10 s backoff by default; a
        # ticket request should fail fast instead (the browser can retry).
        # Stale pooled connections are already re-opened at checkout.
        options["retry"] = Retry(NoBackoff(), 0)
    return options


def _build_client(config):
    kind, value = config
    options = _client_options()
    if kind == "url":
        # Options in the URL's query string take precedence over these.
        return redis.Redis.from_url(value, **options)
    kwargs = dict(value)
    # The seed's dict only had socket_timeout: use it for connecting too.
    if "socket_timeout" in kwargs:
        options["socket_connect_timeout"] = kwargs["socket_timeout"]
    options.update(kwargs)
    return redis.Redis(**options)


_lock = threading.Lock()
_cached = (None, None)  # (configuration key, client)


def redis_client():
    """The Redis client for the current settings (one pool per configuration)."""
    global _cached
    config = redis_config()
    key = json.dumps(config, sort_keys=True, default=repr)
    cached_key, client = _cached
    if cached_key == key:
        return client
    with _lock:
        if _cached[0] != key:
            # The previous client is dropped, not disconnected: a request in
            # another thread may still be using it.
            _cached = (key, _build_client(config))
        return _cached[1]


# The kinds of credential POST /auth/ knows, with their type and default options.
BUILTIN_KINDS = {
    "session": {"type": "session"},
    "drf": {"type": "drf"},
    "simplejwt": {"type": "simplejwt"},
    # django-sesame's ModelBackend: authenticate(request, sesame=token).
    "sesame": {"type": "backend", "kwarg": "sesame"},
}
AUTH_TYPES = ("session", "drf", "simplejwt", "backend")


def _detected_kinds():
    """The kinds the site visibly uses: sessions always (what /session/ has
    always answered), DRF tokens when rest_framework.authtoken is installed,
    simplejwt when it is installed or named in DRF's authentication classes,
    sesame when its backend is in AUTHENTICATION_BACKENDS."""
    apps = set(settings.INSTALLED_APPS)
    kinds = ["session"]
    if "rest_framework.authtoken" in apps:
        kinds.append("drf")
    drf = getattr(settings, "REST_FRAMEWORK", None) or {}
    classes = [c for c in drf.get("DEFAULT_AUTHENTICATION_CLASSES", ()) if isinstance(c, str)]
    if any(a.startswith("rest_framework_simplejwt") for a in apps) or any(
        c.startswith("rest_framework_simplejwt.") for c in classes
    ):
        kinds.append("simplejwt")
    if any(b.startswith("sesame.") for b in getattr(settings, "AUTHENTICATION_BACKENDS", ())):
        kinds.append("sesame")
    return kinds


def auth_kinds():
    """REALTIME_AUTH_KINDS, normalised to {kind: {"type": ..., options}}.

    The setting is a list of built-in kind names (session, drf, simplejwt,
    sesame), or a dict {kind: options} where options may set "type" (session,
    drf, simplejwt or backend; a built-in name is its own type), "class" (the
    DRF authentication class of a drf or simplejwt kind) and "kwarg" (the
    keyword a backend kind passes the credential as). Unset, it is what the
    site visibly uses (see _detected_kinds); [] turns every kind off.
    """
    value = getattr(settings, "REALTIME_AUTH_KINDS", None)
    if value is None:
        value = _detected_kinds()
    if isinstance(value, (list, tuple)):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise ImproperlyConfigured("REALTIME_AUTH_KINDS must be a list of kind names or a dict")
    kinds = {}
    for name, options in value.items():
        where = "REALTIME_AUTH_KINDS[%r]" % (name,)
        if not isinstance(name, str) or not name:
            raise ImproperlyConfigured("REALTIME_AUTH_KINDS: kind names are non-empty strings")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ImproperlyConfigured("%s must be a dict of options" % where)
        unknown = set(options) - {"type", "class", "kwarg"}
        if unknown:
            raise ImproperlyConfigured("%s: unknown options %s" % (where, ", ".join(sorted(unknown))))
        merged = dict(BUILTIN_KINDS.get(name, {}))
        if "type" in options and options["type"] != merged.get("type"):
            merged = {}  # a built-in name given another type keeps none of its defaults
        merged.update(options)
        kind_type = merged.get("type")
        if kind_type not in AUTH_TYPES:
            raise ImproperlyConfigured(
                "%s: \"type\" must be one of %s (a kind that is not built in needs one)"
                % (where, ", ".join(AUTH_TYPES))
            )
        if kind_type == "backend":
            kwarg = merged.get("kwarg")
            if not isinstance(kwarg, str) or not kwarg.isidentifier() or kwarg == "request":
                raise ImproperlyConfigured(
                    "%s: a backend kind needs \"kwarg\", the keyword its backend's "
                    "authenticate() takes the credential as" % where
                )
        elif "kwarg" in merged:
            raise ImproperlyConfigured("%s: \"kwarg\" is for backend kinds" % where)
        if "class" in merged and (kind_type not in ("drf", "simplejwt") or not isinstance(merged["class"], str)):
            raise ImproperlyConfigured(
                "%s: \"class\" is the dotted path of a DRF authentication class, for drf "
                "and simplejwt kinds" % where
            )
        kinds[name] = merged
    return kinds
