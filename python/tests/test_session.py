import json

from django.contrib.auth import get_user_model
from django.test import Client, TestCase, override_settings

TOKEN = "t" * 40


@override_settings(REALTIME_SESSION_TOKEN=TOKEN)
class SessionEndpointTests(TestCase):
    """POST /session/: what Canal's middleware.DjangoSessionLookup calls."""

    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user(
            "alice", "alice@example.com", "alice-password"
        )

    def session_key(self):
        browser = Client()
        self.assertTrue(browser.login(username="alice", password="alice-password"))
        return browser.cookies["sessionid"].value

    def resolve(self, key, token=TOKEN, body=None):
        # A fresh client with CSRF checks on: the Go server sends no cookie and
        # no CSRF token, only the bearer secret.
        client = Client(enforce_csrf_checks=True)
        extra = {"HTTP_AUTHORIZATION": "Bearer " + token} if token is not None else {}
        data = body if body is not None else json.dumps({"session_key": key})
        return client.post("/session/", data, content_type="application/json", **extra)

    def answer(self, response, status=200):
        self.assertEqual(response.status_code, status, response.content)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertIn("no-cache", response.get("Cache-Control", ""))
        return json.loads(response.content.decode())

    def test_live_session_gives_the_ticket_claims(self):
        body = self.answer(self.resolve(self.session_key()))
        self.assertEqual(
            body,
            {
                "user": {
                    "id": self.user.pk,
                    "username": "alice",
                    "email": "alice@example.com",
                    "staff": False,
                    "path": None,  # the claims hook gets request=None here
                }
            },
        )

    def test_sessions_of_nobody_give_null(self):
        cases = {
            "unknown key": lambda: "x" * 32,
            "logged out": self.logged_out_key,
            "password changed": self.password_changed_key,
            "anonymous session": self.anonymous_key,
        }
        for name, make_key in cases.items():
            with self.subTest(name):
                self.assertEqual(self.answer(self.resolve(make_key())), {"user": None})

    def logged_out_key(self):
        browser = Client()
        browser.login(username="alice", password="alice-password")
        key = browser.cookies["sessionid"].value
        browser.logout()
        return key

    def password_changed_key(self):
        key = self.session_key()
        user = get_user_model().objects.get(pk=self.user.pk)
        user.set_password("new-password")
        user.save()
        return key

    def anonymous_key(self):
        from importlib import import_module

        from django.conf import settings

        store = import_module(settings.SESSION_ENGINE).SessionStore()
        store["cart"] = [1, 2]
        store.save()
        return store.session_key

    def test_token_is_required(self):
        key = self.session_key()
        for name, token in {"missing": None, "wrong": "u" * 40, "prefix": TOKEN[:-1]}.items():
            with self.subTest(name):
                self.assertEqual(self.answer(self.resolve(key, token=token), 401), {"error": "bad token"})

    def test_bad_bodies_are_400(self):
        for body in ["", "not json", "[]", json.dumps({"session_key": ""}), json.dumps({"session_key": 5})]:
            with self.subTest(body=body):
                self.answer(self.resolve(None, body=body), 400)

    def test_get_is_405(self):
        response = Client().get("/session/", HTTP_AUTHORIZATION="Bearer " + TOKEN)
        self.assertEqual(response.status_code, 405)

    @override_settings(REALTIME_SESSION_TOKEN=None)
    def test_off_without_a_token_setting(self):
        self.assertEqual(self.answer(self.resolve(self.session_key()), 404), {"error": "credential endpoint disabled"})

    @override_settings(REALTIME_SESSION_TOKEN="short")
    def test_short_token_setting_is_refused(self):
        from django.core.exceptions import ImproperlyConfigured

        from django_canal import conf

        with self.assertRaises(ImproperlyConfigured):
            conf.session_token()

    @override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
    def test_signed_cookie_sessions(self):
        # The key is the whole signed cookie; Django's engine checks the signature.
        body = self.answer(self.resolve(self.session_key()))
        self.assertEqual(body["user"]["username"], "alice")
        tampered = self.session_key()[:-2] + "xx"
        self.assertEqual(self.answer(self.resolve(tampered)), {"user": None})
