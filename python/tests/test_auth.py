"""POST /auth/: every kind of credential, resolved with Django's own machinery."""

import datetime
import json
import logging
import sys
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, TestCase, override_settings

from django_canal import conf

from .backends import SignedTokenBackend, make_token

TOKEN = "s" * 40
DRF_KINDS = ("drf", "simplejwt")


class Logs(logging.Handler):
    """Every record of every logger, at every level, while installed."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []
        self.records = []

    def emit(self, record):
        self.records.append(record)
        self.messages.append(record.getMessage())

    def __enter__(self):
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)


@override_settings(REALTIME_SESSION_TOKEN=TOKEN)
class AuthEndpointTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        users = get_user_model().objects
        cls.alice = users.create_user("alice", "alice@example.com", "alice-password")
        cls.idle = users.create_user("idle", "idle@example.com", "idle-password", is_active=False)

    def post(self, kind=None, credential=None, token=TOKEN, body=None, url="/auth/"):
        # CSRF checks on, no cookie: the Go server sends only the bearer secret.
        client = Client(enforce_csrf_checks=True)
        extra = {"HTTP_AUTHORIZATION": "Bearer " + token} if token is not None else {}
        if body is None:
            body = json.dumps({"kind": kind, "credential": credential})
        return client.post(url, body, content_type="application/json", **extra)

    def answer(self, response, status=200):
        self.assertEqual(response.status_code, status, response.content)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertIn("no-cache", response.get("Cache-Control", ""))
        return json.loads(response.content.decode())

    def claims(self, user):
        # ticket_claims(user): what a ticket holds; the hook gets request=None.
        return {"id": user.pk, "username": user.username, "email": user.email, "staff": user.is_staff, "path": None}

    def assertUser(self, kind, credential, user):
        with Logs() as logs:
            response = self.post(kind, credential)
        body = self.answer(response)
        self.assertEqual(body, {"user": self.claims(user) if user is not None else None})
        self.assertNotIn(credential, response.content.decode())
        self.assertEqual([m for m in logs.messages if credential in m], [])

    # -- session --

    def session_key(self, username="alice", password="alice-password"):
        browser = Client()
        self.assertTrue(browser.login(username=username, password=password))
        return browser.cookies["sessionid"].value

    def test_session(self):
        key = self.session_key()
        self.assertUser("session", key, self.alice)
        self.assertUser("session", "x" * 32, None)

    def test_session_endpoint_is_the_session_kind(self):
        key = self.session_key()
        for body in ({"session_key": key}, {"kind": "session", "credential": key}):
            with self.subTest(body=list(body)):
                response = self.post(body=json.dumps(body), url="/session/")
                self.assertEqual(self.answer(response), {"user": self.claims(self.alice)})
        response = self.post("sesame", make_token(self.alice), url="/session/")
        self.assertEqual(self.answer(response, 400), {"error": "this endpoint only checks session credentials"})

    # -- DRF and simplejwt: where they import, and "kind not available" where not --

    def test_drf_token(self):
        if not settings.DRF:
            return self.assertKindNotAvailable("drf")
        from rest_framework.authtoken.models import Token

        self.assertUser("drf", Token.objects.create(user=self.alice).key, self.alice)
        self.assertUser("drf", "0" * 40, None)
        # TokenAuthentication refuses inactive users.
        self.assertUser("drf", Token.objects.create(user=self.idle).key, None)
        # A deleted token (logout in DRF terms) takes effect at once.
        token = Token.objects.get(user=self.alice)
        key = token.key
        token.delete()
        self.assertUser("drf", key, None)

    def test_drf_uses_the_sites_token_class(self):
        if not settings.DRF:
            return self.assertKindNotAvailable("drf")
        from rest_framework.authtoken.models import Token

        key = Token.objects.create(user=self.alice).key
        refusing = {"DEFAULT_AUTHENTICATION_CLASSES": ["tests.drf.RefusingTokenAuthentication"]}
        with override_settings(REST_FRAMEWORK=refusing):
            self.assertUser("drf", key, None)
        with override_settings(REALTIME_AUTH_KINDS={"drf": {"class": "tests.drf.RefusingTokenAuthentication"}}):
            self.assertUser("drf", key, None)
        self.assertUser("drf", key, self.alice)

    def test_simplejwt(self):
        if not settings.DRF:
            return self.assertKindNotAvailable("simplejwt")
        from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

        access = str(AccessToken.for_user(self.alice))
        self.assertUser("simplejwt", access, self.alice)
        # Tampered payload, a refresh token where an access token is expected, an
        # expired token, and one of an inactive user: nobody.
        head, payload, sig = access.split(".")
        self.assertUser("simplejwt", ".".join([head, payload[:-2] + "xx", sig]), None)
        self.assertUser("simplejwt", str(RefreshToken.for_user(self.alice)), None)
        expired = AccessToken.for_user(self.alice)
        expired.set_exp(lifetime=-datetime.timedelta(seconds=1))
        self.assertUser("simplejwt", str(expired), None)
        self.assertUser("simplejwt", str(AccessToken.for_user(self.idle)), None)
        self.assertUser("simplejwt", "not-a-jwt", None)

    def test_kind_not_available_where_its_package_does_not_import(self):
        # What a Django that DRF or simplejwt cannot import under answers (on the
        # Debian suites tested so far both import, so it is simulated here).
        for kind, module in [
            ("drf", "rest_framework.authentication"),
            ("simplejwt", "rest_framework_simplejwt.authentication"),
        ]:
            with self.subTest(kind), mock.patch.dict(sys.modules, {module: None}):
                self.assertKindNotAvailable(kind)
        with override_settings(REALTIME_AUTH_KINDS={"drf": {"class": "tests.no_such_module.Auth"}}):
            self.assertKindNotAvailable("drf")

    def assertKindNotAvailable(self, kind):
        body = self.answer(self.post(kind, "some-credential"), 400)
        self.assertEqual(body["error"], "kind not available")

    # -- backend kinds: sesame's shape and the site's own --

    def test_sesame_shaped_backend(self):
        token = make_token(self.alice)
        self.assertUser("sesame", token, self.alice)
        self.assertUser("sesame", token[:-2] + "xx", None)
        self.assertUser("sesame", make_token(self.idle), None)
        # A token of another backend's salt is not a sesame token.
        self.assertUser("sesame", make_token(self.alice, salt=SignedTokenBackend.SALT), None)
        # Like sesame's, these tokens end at a password change.
        alice = get_user_model().objects.get(pk=self.alice.pk)
        alice.set_password("new-password")
        alice.save()
        self.assertUser("sesame", token, None)

    def test_backend_kind_with_its_own_keyword(self):
        token = make_token(self.alice, salt=SignedTokenBackend.SALT)
        self.assertUser("signed", token, self.alice)
        self.assertUser("signed", make_token(self.alice), None)

    @override_settings(
        AUTHENTICATION_BACKENDS=["tests.backends.AnyUserBackend"],
        REALTIME_AUTH_KINDS={"any": {"type": "backend", "kwarg": "any_user"}},
    )
    def test_inactive_users_are_nobody_whatever_the_backend(self):
        self.assertUser("any", make_token(self.alice, salt=SignedTokenBackend.SALT), self.alice)
        self.assertUser("any", make_token(self.idle, salt=SignedTokenBackend.SALT), None)

    @override_settings(
        AUTHENTICATION_BACKENDS=["tests.backends.FailingBackend"],
        REALTIME_AUTH_KINDS={"failing": {"type": "backend", "kwarg": "failing"}},
    )
    def test_a_failing_check_is_500_and_logs_no_credential(self):
        credential = "credential-5e1f0c9a"
        with Logs() as logs:
            response = self.post("failing", credential)
        self.assertEqual(self.answer(response, 500), {"error": "internal error"})
        self.assertTrue([m for m in logs.messages if "database is down" in m], logs.messages)
        self.assertEqual([m for m in logs.messages if credential in m or TOKEN in m], [])
        # Django logs every 5xx answer with its request, and AdminEmailHandler mails
        # that request's report: it holds neither the credential nor the secret.
        from django.views.debug import ExceptionReporter

        logged = [r for r in logs.records if getattr(r, "request", None) is not None]
        self.assertTrue(logged, "Django did not log the 500")
        for record in logged:
            report = ExceptionReporter(record.request, None, None, None, is_email=True).get_traceback_text()
            self.assertIn("/auth/", report)
            self.assertNotIn(TOKEN, report)
            self.assertNotIn(credential, report)

    @override_settings(
        AUTHENTICATION_BACKENDS=["tests.backends.FailingBackend"],
        REALTIME_AUTH_KINDS={"failing": {"type": "backend", "kwarg": "failing"}},
    )
    def test_error_reports_hide_the_credential_in_our_frames(self):
        # Django's error report (the 500 e-mail, tools reading it) shows each frame's
        # locals: the checks are sensitive_variables(). A backend's own frames are
        # the backend's business (Django's authenticate() marks only "credentials"),
        # which is why the endpoint answers a failed check itself, with no report:
        # see test_a_failing_check_is_500_and_logs_no_credential.
        import django_canal.credentials
        from django.test import RequestFactory
        from django.views.debug import ExceptionReporter

        credential = "credential-77c0b3e1"
        request = RequestFactory().post("/auth/")
        try:
            django_canal.credentials.resolve(request, "failing", credential)
        except RuntimeError:
            frames = ExceptionReporter(request, *sys.exc_info()).get_traceback_data()["frames"]
        else:
            return self.fail("the failing backend did not fail")
        ours = [f for f in frames if f["filename"] == django_canal.credentials.__file__]
        self.assertEqual([f["function"] for f in ours], ["resolve", "_backend"])
        for frame in ours:
            self.assertTrue(frame["vars"], frame["function"])
            for name, value in frame["vars"]:
                self.assertNotIn(credential, str(value), "frame %s, variable %s" % (frame["function"], name))

    # -- the endpoint's other answers --

    def test_kinds_not_enabled_are_400(self):
        with override_settings(REALTIME_AUTH_KINDS=["session"]):
            body = self.answer(self.post("sesame", make_token(self.alice)), 400)
        self.assertEqual(body, {"error": "unknown kind", "kind": "sesame"})
        self.assertEqual(self.answer(self.post("nonsense", "x"), 400)["error"], "unknown kind")
        with override_settings(REALTIME_AUTH_KINDS=[]):
            self.assertEqual(self.answer(self.post("session", self.session_key()), 400)["error"], "unknown kind")

    def test_secret_is_required(self):
        key = self.session_key()
        for name, token in {"missing": None, "wrong": "u" * 40, "prefix": TOKEN[:-1]}.items():
            with self.subTest(name):
                self.assertEqual(self.answer(self.post("session", key, token=token), 401), {"error": "bad token"})

    @override_settings(REALTIME_SESSION_TOKEN=None)
    def test_off_without_a_secret(self):
        body = self.answer(self.post("session", self.session_key()), 404)
        self.assertEqual(body, {"error": "credential endpoint disabled"})

    def test_bad_bodies_are_400(self):
        bodies = [
            "",
            "not json",
            "[]",
            json.dumps({"credential": "x"}),
            json.dumps({"kind": "session"}),
            json.dumps({"kind": "session", "credential": ""}),
            json.dumps({"kind": "session", "credential": 5}),
            json.dumps({"kind": 5, "credential": "x"}),
            json.dumps({"kind": "session", "credential": "x" * 8193}),
            b"\xff\xfe",
        ]
        for body in bodies:
            with self.subTest(body=body[:40]):
                self.answer(self.post(body=body), 400)

    def test_get_is_405(self):
        response = Client().get("/auth/", HTTP_AUTHORIZATION="Bearer " + TOKEN)
        self.assertEqual(response.status_code, 405)


class AuthKindsSettingTests(TestCase):
    def test_list_and_dict_forms(self):
        with override_settings(REALTIME_AUTH_KINDS=["session", "sesame"]):
            self.assertEqual(
                conf.auth_kinds(),
                {"session": {"type": "session"}, "sesame": {"type": "backend", "kwarg": "sesame"}},
            )
        kinds = {"sesame": {"kwarg": "token"}, "jwt": {"type": "simplejwt", "class": "x.Y"}}
        with override_settings(REALTIME_AUTH_KINDS=kinds):
            self.assertEqual(
                conf.auth_kinds(),
                {
                    "sesame": {"type": "backend", "kwarg": "token"},
                    "jwt": {"type": "simplejwt", "class": "x.Y"},
                },
            )

    def test_detected_from_the_site(self):
        with override_settings():
            del settings.REALTIME_AUTH_KINDS
            with override_settings(INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"]):
                self.assertEqual(list(conf.auth_kinds()), ["session"])
            with override_settings(
                INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "rest_framework.authtoken"]
                if settings.DRF
                else ["django.contrib.auth", "django.contrib.contenttypes"],
                REST_FRAMEWORK={
                    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"]
                },
                AUTHENTICATION_BACKENDS=["sesame.backends.ModelBackend"],
            ):
                want = ["session", "drf", "simplejwt", "sesame"] if settings.DRF else ["session", "simplejwt", "sesame"]
                self.assertEqual(list(conf.auth_kinds()), want)

    def test_bad_settings(self):
        bad = [
            "session",
            {"": {}},
            {"session": "x"},
            {"session": {"colour": "blue"}},
            {"mine": {}},
            {"mine": {"type": "ldap"}},
            {"mine": {"type": "backend"}},
            {"mine": {"type": "backend", "kwarg": "request"}},
            {"mine": {"type": "backend", "kwarg": "not an identifier"}},
            {"session": {"kwarg": "x"}},
            {"sesame": {"class": "x.Y"}},
            {"drf": {"class": 5}},
        ]
        for value in bad:
            with self.subTest(value=value), override_settings(REALTIME_AUTH_KINDS=value):
                with self.assertRaises(ImproperlyConfigured):
                    conf.auth_kinds()
