"""Resolving a credential of any kind to its user, with Django's own machinery.

The Canal server (Go) receives credentials from browsers and other clients: a
session key, a Django REST framework token, a simplejwt access token, a
django-sesame token, ... It cannot check most of them itself, since they live
in the site's database or depend on the site's code, so it asks the site
through ``auth_view`` (``POST /auth/``). This module does the checking.

A *kind* names how a credential is checked. REALTIME_AUTH_KINDS lists the
kinds the endpoint accepts (see ``conf.auth_kinds``); each has a *type*:

* ``session``: a session key, loaded with SESSION_ENGINE and checked by
  ``django.contrib.auth.get_user`` exactly as for a request with that cookie;
* ``drf``: a token of a DRF ``TokenAuthentication`` class, checked by its
  ``authenticate_credentials`` (unknown and inactive users are refused there);
* ``simplejwt``: an access token, checked by a simplejwt ``JWTAuthentication``
  class's ``get_validated_token`` and ``get_user``;
* ``backend``: ``django.contrib.auth.authenticate(request, **{kwarg:
  credential})``, i.e. every AUTHENTICATION_BACKENDS backend whose
  ``authenticate`` takes that keyword (django-sesame's takes ``sesame``).

Whatever the type, an inactive user identifies nobody.

The checks are marked sensitive_variables(): Django's error reports hide the
locals of their frames and of every frame they call (DRF, the ORM), where the
credential is.
"""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import authenticate, get_user
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from . import conf


class KindError(Exception):
    """The endpoint cannot check credentials of the kind asked for."""


class UnknownKind(KindError):
    """The kind is not in REALTIME_AUTH_KINDS."""


class KindUnavailable(KindError):
    """The kind is enabled but its package does not import here."""


class _SessionOnly:
    """The part of a request django.contrib.auth.get_user reads."""

    def __init__(self, session):
        self.session = session


@sensitive_variables()
def _session(request, credential, options):
    # The site's own session engine and checks, as for any request: expiry,
    # the backend, and the password hash that ends sessions at a password change.
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=credential)
    return get_user(_SessionOnly(store))


def _drf_class(options, base_path, kind):
    """The DRF authentication class for a kind: the "class" option, else the
    first subclass of base_path in DRF's DEFAULT_AUTHENTICATION_CLASSES (the
    site's own), else base_path itself."""
    # Any exception, not only ImportError: a package that does not support this
    # Django can fail to import in other ways (an AttributeError in its code).
    try:
        base = import_string(base_path)
        from rest_framework.settings import api_settings
    except Exception as exc:
        raise KindUnavailable("%s: %s: %s" % (kind, type(exc).__name__, exc)) from exc
    path = options.get("class")
    if path is not None:
        try:
            return import_string(path)
        except Exception as exc:
            raise KindUnavailable("%s: %s: %s" % (kind, type(exc).__name__, exc)) from exc
    for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if isinstance(cls, type) and issubclass(cls, base):
            return cls
    return base


@sensitive_variables()
def _drf(request, credential, options):
    cls = _drf_class(options, "rest_framework.authentication.TokenAuthentication", "drf")
    from rest_framework.exceptions import AuthenticationFailed

    try:
        user, _ = cls().authenticate_credentials(credential)
    except AuthenticationFailed:
        return None
    return user


@sensitive_variables()
def _simplejwt(request, credential, options):
    cls = _drf_class(
        options, "rest_framework_simplejwt.authentication.JWTAuthentication", "simplejwt"
    )
    from rest_framework.exceptions import AuthenticationFailed

    authenticator = cls()
    try:
        # Bytes, as JWTAuthentication.authenticate passes the header's token on.
        token = authenticator.get_validated_token(credential.encode("utf-8"))
        return authenticator.get_user(token)
    except AuthenticationFailed:  # InvalidToken is one too
        return None


@sensitive_variables()
def _backend(request, credential, options):
    # Only backends whose authenticate() accepts this keyword are tried; the
    # others are skipped by Django, as for a login form's username/password.
    return authenticate(request, **{options["kwarg"]: credential})


_CHECKS = {"session": _session, "drf": _drf, "simplejwt": _simplejwt, "backend": _backend}


@sensitive_variables()
def resolve(request, kind, credential):
    """The active, authenticated user ``credential`` identifies, or None.

    Raises UnknownKind for a kind REALTIME_AUTH_KINDS does not enable,
    KindUnavailable when its package does not import, and ImproperlyConfigured
    for a bad setting. Other exceptions (a database that is down) propagate:
    the caller must not answer "nobody" when it does not know.
    """
    kinds = conf.auth_kinds()
    options = kinds.get(kind)
    if options is None:
        raise UnknownKind(kind)
    check = _CHECKS.get(options["type"])
    if check is None:  # conf.auth_kinds validates; this guards a future type
        raise ImproperlyConfigured("REALTIME_AUTH_KINDS[%r]: unknown type" % kind)
    user = check(request, credential, options)
    if user is None or not user.is_authenticated or not getattr(user, "is_active", True):
        return None
    return user
