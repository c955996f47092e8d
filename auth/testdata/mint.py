"""Mint credentials with the real Django packages, for auth's interop tests.

    /usr/bin/python3 auth/testdata/mint.py all       # Django + simplejwt + PyJWT
    /usr/bin/python3 auth/testdata/mint.py signing   # django.core.signing only

prints one JSON object: {"django": version, "signing": [case...], "jwt": [case...]}.
A case is {"name", "token", "opts", "django"}: opts are the Go verifier's options
(auth.SignedOptions or auth.JWTOptions field names; durations in nanoseconds), and
"django" is Django's own verdict on the token under the same settings (true: accepted,
false: refused, null: this Django version cannot say, e.g. fallback keys before 4.1).
The Go test asserts its own verdict for each case and that it agrees with Django's.
"""

import json
import sys
import time
from datetime import timedelta
from unittest import mock

SECRET = "django-insecure-test-secret-\u00fcn\u00efcode"  # non-ASCII: keys are UTF-8
OLD_SECRET = "django-insecure-the-key-before-rotation"
SALT = "canal.ws"
SEC = 1_000_000_000  # nanoseconds, for Go's time.Duration

mode = sys.argv[1] if len(sys.argv) > 1 else "all"

import django
from django.conf import settings

apps = ["django.contrib.contenttypes", "django.contrib.auth"]
if mode == "all":
    apps += ["rest_framework", "rest_framework_simplejwt"]
settings.configure(
    SECRET_KEY=SECRET,
    INSTALLED_APPS=apps,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    SIMPLE_JWT={"ACCESS_TOKEN_LIFETIME": timedelta(minutes=5)},
)
django.setup()

from django.core import signing

HAS_FALLBACKS = django.VERSION >= (4, 1)
USER = {"user_id": 42, "username": "alice", "is_staff": True, "groups": ["editors", "staff"]}


def verdict(check):
    """Django's verdict: does check() accept the token?"""
    try:
        check()
        return True
    except signing.BadSignature:  # SignatureExpired is a BadSignature
        return False
    except ValueError:  # TimestampSigner on a Signer token: no timestamp to split off
        return False


def tampered(token):
    """Flip one character in the middle of the payload, as an attacker would."""
    i = len(token) // 4
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def signing_cases():
    cases = []

    def add(name, token, opts, django_verdict):
        cases.append({"name": name, "token": token, "opts": opts, "django": django_verdict})

    base = {"Key": SECRET, "Salt": SALT, "MaxAge": 60 * SEC}
    loads = lambda t, **kw: verdict(lambda: signing.loads(t, salt=SALT, max_age=60, **kw))

    t = signing.dumps(USER, salt=SALT)
    add("dumps", t, base, loads(t))
    add("dumps tampered", tampered(t), base, loads(tampered(t)))

    big = dict(USER, groups=["group-%d" % (i % 5) for i in range(60)])
    t = signing.dumps(big, salt=SALT, compress=True)
    assert t.startswith("."), "compress=True did not compress"
    add("dumps compressed", t, base, loads(t))

    t = signing.dumps(USER, salt=SALT, compress=True)  # too small to gain: no '.'
    assert not t.startswith(".")
    add("dumps compress small", t, base, loads(t))

    t = signing.dumps(42, salt=SALT)
    add("dumps of an id", t, base, loads(t))

    t = signing.dumps(USER, salt="another.use")
    add("salt mismatch", t, base, loads(t))

    t = signing.dumps(USER)  # default salt
    add("default salt", t, dict(base, Salt=""), verdict(lambda: signing.loads(t, max_age=60)))

    with mock.patch("time.time", return_value=time.time() - 3600):
        t = signing.dumps(USER, salt=SALT)
    add("expired", t, base, loads(t))
    add("expired, any age", t, dict(base, MaxAge=0, NoMaxAge=True),
        verdict(lambda: signing.loads(t, salt=SALT)))

    t = signing.dumps(USER, key=OLD_SECRET, salt=SALT)
    fb = None
    if HAS_FALLBACKS:
        fb = verdict(lambda: signing.loads(t, salt=SALT, max_age=60, fallback_keys=[OLD_SECRET]))
    add("fallback key", t, dict(base, Fallbacks=[OLD_SECRET]), fb)
    no_fb = verdict(lambda: signing.loads(t, salt=SALT, max_age=60, **({"fallback_keys": []} if HAS_FALLBACKS else {})))
    add("rotated key without fallback", t, base, no_fb)

    t = signing.TimestampSigner(salt=SALT).sign("42")
    add("TimestampSigner.sign", t, dict(base, Value=True),
        verdict(lambda: signing.TimestampSigner(salt=SALT).unsign(t, max_age=60)))

    t = signing.TimestampSigner().sign("7")
    add("TimestampSigner default salt", t,
        dict(base, Value=True, Salt="django.core.signing.TimestampSigner"),
        verdict(lambda: signing.TimestampSigner().unsign(t, max_age=60)))

    t = signing.Signer(salt=SALT).sign("42")
    add("Signer.sign", t, {"Key": SECRET, "Salt": SALT, "Value": True, "NoTimestamp": True, "NoMaxAge": True},
        verdict(lambda: signing.Signer(salt=SALT).unsign(t)))
    add("Signer.sign as TimestampSigner", t, dict(base, Value=True),
        verdict(lambda: signing.TimestampSigner(salt=SALT).unsign(t, max_age=60)))

    t = signing.TimestampSigner(salt=SALT, algorithm="sha1").sign_object(USER)
    add("sha1", t, dict(base, Algorithm="sha1"),
        verdict(lambda: signing.TimestampSigner(salt=SALT, algorithm="sha1").unsign_object(t, max_age=60)))

    t = signing.TimestampSigner(salt=SALT, sep="~").sign_object(USER)
    add("sep", t, dict(base, Sep="~"),
        verdict(lambda: signing.TimestampSigner(salt=SALT, sep="~").unsign_object(t, max_age=60)))
    return cases


def jwt_cases():
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
    from rest_framework_simplejwt.backends import TokenBackend
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
    from rest_framework_simplejwt.tokens import RefreshToken, SlidingToken, Token

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("alice", password="x", is_staff=True)
    user.groups.add(Group.objects.create(name="editors"))

    def pair(priv):
        private = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        public = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return private, public

    rsa_priv, rsa_pub = pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_priv, ec_pub = pair(ec.generate_private_key(ec.SECP256R1()))
    ed_priv, ed_pub = pair(ed25519.Ed25519PrivateKey.generate())

    def refresh_for(u):
        # As a TokenObtainPairSerializer.get_token override adds claims; access_token
        # copies them.
        r = RefreshToken.for_user(u)
        r["username"] = u.username
        r["is_staff"] = u.is_staff
        r["groups"] = [g.name for g in u.groups.all()]
        return r

    def django_verdict(token, backend=None):
        """simplejwt's own check, stateless as the Go verifier: JWTStatelessUserAuthentication."""
        old = Token._token_backend
        try:
            if backend is not None:
                Token._token_backend = backend
            auth = JWTStatelessUserAuthentication()
            auth.get_user(auth.get_validated_token(token))
            return True
        except (InvalidToken, AuthenticationFailed):
            return False
        finally:
            Token._token_backend = old

    cases = []

    def add(name, token, opts, django_verdict):
        cases.append({"name": name, "token": token, "opts": opts, "django": django_verdict})

    hs = {"SigningKey": SECRET}
    refresh = refresh_for(user)
    access = refresh.access_token
    t = str(access)
    add("access", t, hs, django_verdict(t))
    add("access tampered", tampered(t), hs, django_verdict(tampered(t)))
    t2 = str(refresh)
    add("refresh", t2, hs, django_verdict(t2))
    t2 = str(SlidingToken.for_user(user))
    add("sliding", t2, hs, django_verdict(t2))
    try:  # AUTH_TOKEN_CLASSES with SlidingToken: the token class alone decides
        SlidingToken(t2)
        sliding_ok = True
    except TokenError:
        sliding_ok = False
    add("sliding accepted", t2, dict(hs, TokenTypes=["access", "sliding"]), sliding_ok)

    expired = refresh.access_token
    expired.set_exp(lifetime=timedelta(seconds=-60))
    t2 = str(expired)
    add("expired", t2, hs, django_verdict(t2))

    lee = refresh.access_token
    lee.set_exp(lifetime=timedelta(seconds=-5))
    t2 = str(lee)
    add("expired within leeway", t2, dict(hs, Leeway=30 * SEC),
        django_verdict(t2, TokenBackend("HS256", SECRET, leeway=30)))

    future = refresh.access_token
    future.set_iat(at_time=future.current_time + timedelta(hours=1))
    t2 = str(future)
    add("issued in the future", t2, hs, django_verdict(t2))

    other = TokenBackend("HS256", "another secret").encode(access.payload)
    add("other secret", other, hs, django_verdict(other))

    uuid_token = refresh.access_token
    uuid_token["user_id"] = "3f1c2b9e-4d5a-4c6b-8e7f-0a1b2c3d4e5f"
    t2 = str(uuid_token)
    add("uuid user id", t2, hs, django_verdict(t2))

    aud = TokenBackend("HS256", SECRET, audience="canal", issuer="https://example.test")
    t2 = aud.encode(access.payload)
    add("audience and issuer", t2, dict(hs, Audience="canal", Issuer="https://example.test"), django_verdict(t2, aud))
    add("other audience", t2, dict(hs, Audience="billing"),
        django_verdict(t2, TokenBackend("HS256", SECRET, audience="billing")))

    rs = TokenBackend("RS256", rsa_priv, rsa_pub)
    t2 = rs.encode(access.payload)
    add("RS256", t2, {"Algorithm": "RS256", "VerifyingKey": rsa_pub}, django_verdict(t2, rs))
    add("RS256 to an HS256 verifier", t2, hs, django_verdict(t2))

    es = TokenBackend("ES256", ec_priv, ec_pub)
    t2 = es.encode(access.payload)
    add("ES256", t2, {"Algorithm": "ES256", "VerifyingKey": ec_pub}, django_verdict(t2, es))

    # simplejwt 5.2 does not offer EdDSA; PyJWT signs it.
    t2 = pyjwt.encode(access.payload, ed_priv, algorithm="EdDSA")
    add("EdDSA", t2, {"Algorithm": "EdDSA", "VerifyingKey": ed_pub}, None)
    return cases, user.pk


out = {"django": django.get_version(), "signing": signing_cases(), "jwt": []}
if mode == "all":
    out["jwt"], out["user_pk"] = jwt_cases()
json.dump(out, sys.stdout)
