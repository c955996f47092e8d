"""Authentication backends of the shapes /auth/'s backend kinds call.

SesameShapedBackend has django-sesame's signature, authenticate(self,
request, sesame), which is all the "sesame" kind relies on (django-sesame is
not packaged for Debian). Its tokens are django.core.signing tokens of the
user's primary key and password hash prefix, so that, as with sesame, a
password change ends them. SignedTokenBackend takes another keyword, for a
kind of the site's own.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core import signing

SALT = "tests.backends"
MAX_AGE = 300


def _hash_part(user):
    return user.password[-8:]


def make_token(user, salt=SALT):
    return signing.dumps({"pk": user.pk, "h": _hash_part(user)}, salt=salt)


def _user_for(token, salt):
    try:
        data = signing.loads(token, salt=salt, max_age=MAX_AGE)
    except signing.BadSignature:  # SignatureExpired is one too
        return None
    try:
        user = get_user_model()._default_manager.get(pk=data["pk"])
    except (get_user_model().DoesNotExist, KeyError, TypeError):
        return None
    if _hash_part(user) != data.get("h"):
        return None
    return user


class SesameShapedBackend(ModelBackend):
    def authenticate(self, request, sesame):
        user = _user_for(sesame, SALT)
        # ModelBackend's check: refuses inactive users.
        return user if user is not None and self.user_can_authenticate(user) else None


class SignedTokenBackend(ModelBackend):
    SALT = "tests.backends.signed"

    def authenticate(self, request, signed_token):
        user = _user_for(signed_token, self.SALT)
        return user if user is not None and self.user_can_authenticate(user) else None


class AnyUserBackend(ModelBackend):
    """Lets inactive users through, as AllowAllUsersModelBackend does: the
    endpoint must still answer null for them."""

    def authenticate(self, request, any_user):
        return _user_for(any_user, SignedTokenBackend.SALT)


class FailingBackend(ModelBackend):
    """Fails the way a database that is down does, quoting its input."""

    def authenticate(self, request, failing):
        token = failing  # a local of a frame below the endpoint's check
        raise RuntimeError("lookup of %r failed: database is down" % token)
