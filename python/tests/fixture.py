"""Set up this project's database for a Go test and print credentials.

    CANAL_TEST_DB=/tmp/x/db.sqlite3 python3 -m tests.fixture

(from python/, with DJANGO_SETTINGS_MODULE=tests.settings). Migrates, creates
the users alice (active) and idle (inactive), and prints one JSON object:
{"alice": {"id": ..., kind: credential, ...}, "idle": {...}} with a credential
of every kind /auth/ knows here (session, signed, sesame, and drf and
simplejwt where DRF imports). Used by canaltest.StartDjangoTests.
"""

import json
import os


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.core.management import call_command
    from importlib import import_module

    from tests.backends import SignedTokenBackend, make_token

    call_command("migrate", verbosity=0, interactive=False)
    users = get_user_model().objects
    out = {}
    for name, active in (("alice", True), ("idle", False)):
        user = users.create_user(name, name + "@example.com", name + "-password", is_active=active)
        # A logged-in session, written as django.contrib.auth.login writes one
        # (login() refuses nobody: it is the backends that refuse the inactive).
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        store[SESSION_KEY] = user._meta.pk.value_to_string(user)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.save()
        creds = {
            "id": user.pk,
            "session": store.session_key,
            "sesame": make_token(user),
            "signed": make_token(user, salt=SignedTokenBackend.SALT),
        }
        if settings.DRF:
            from rest_framework.authtoken.models import Token
            from rest_framework_simplejwt.tokens import AccessToken

            creds["drf"] = Token.objects.create(user=user).key
            creds["simplejwt"] = str(AccessToken.for_user(user))
        out[name] = creds
    print(json.dumps(out))


if __name__ == "__main__":
    main()
