"""Tokens of django-sesame's shape, for the websockets guide's flow.

django-sesame is not packaged for Debian, so this module stands in for the
two parts of it the guide uses: sesame.utils.get_token(user), and the
authentication backend sesame.backends.ModelBackend, whose authenticate()
takes the token as the keyword ``sesame``. That keyword is all django_canal's
"sesame" kind relies on: with django-sesame installed, drop this module and
list "sesame.backends.ModelBackend" in AUTHENTICATION_BACKENDS instead;
nothing else changes, on either side.

As with sesame, a token carries the user's primary key and a piece of the
password hash, signed with SECRET_KEY and timestamped: it expires after
SESAME_MAX_AGE seconds, and a password change ends it.
"""

from django.conf import settings
from django.contrib.auth import backends, get_user_model
from django.core import signing

SALT = "token_auth_app.sesame"


def _hash_part(user):
    return user.password[-12:]


def get_token(user):
    """A token for ``user``, as sesame.utils.get_token."""
    return signing.dumps({"pk": user.pk, "h": _hash_part(user)}, salt=SALT)


class ModelBackend(backends.ModelBackend):
    """Authenticates a sesame token, as sesame.backends.ModelBackend."""

    def authenticate(self, request, sesame):
        try:
            data = signing.loads(sesame, salt=SALT, max_age=getattr(settings, "SESAME_MAX_AGE", 300))
            user = get_user_model()._default_manager.get(pk=data["pk"])
        except (signing.BadSignature, get_user_model().DoesNotExist, KeyError, TypeError):
            return None  # expired (SignatureExpired is a BadSignature), forged, or nobody
        if _hash_part(user) != data.get("h") or not self.user_can_authenticate(user):
            return None  # password changed since, or inactive
        return user
