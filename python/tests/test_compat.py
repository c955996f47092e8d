"""A django-realtime-ticket site keeps working with realtime_ticket swapped for
this distribution's (its README: INSTALLED_APPS, include("realtime_ticket.urls"),
POST /ticket/, RealtimeTicketMiddleware, {{ realtime_ticket }})."""

import importlib

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import reverse

from django_canal import conf

from .base import RedisTestCase, sha256_key

SEED_ERROR = {"status": "error", "message": "error while creating ticket"}


@override_settings(ROOT_URLCONF="tests.urls_seed", INSTALLED_APPS=[
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "realtime_ticket",  # and not django_canal: the seed site's list
])
class SeedSiteTests(RedisTestCase):
    def test_app_installs_under_its_name(self):
        self.assertTrue(apps.is_installed("realtime_ticket"))

    def test_url_names(self):
        self.assertEqual(reverse("realtime_ticket"), "/ticket/")
        self.assertEqual(reverse("realtime-ticket"), "/ticket/")

    def test_post_ticket_gives_the_seed_answer(self):
        for url in ("/ticket/", "/cbv/ticket/"):
            with self.subTest(url):
                response = self.post_ticket(self.logged_in_client(), url=url)
                self.assertEqual(response.status_code, 200)
                body = self.json(response)
                self.assertEqual(body["status"], "ok")
                self.assertIn(sha256_key(body["message"]), self.ticket_keys())

    def test_class_based_view_refuses_get(self):
        self.assertEqual(self.logged_in_client().get("/cbv/ticket/").status_code, 405)

    def test_anonymous_answer_is_403_by_default(self):
        for url in ("/ticket/", "/cbv/ticket/"):
            with self.subTest(url):
                response = self.post_ticket(self.anonymous_client(), url=url)
                self.assertEqual(response.status_code, 403)
                self.assertEqual(self.json(response), {"status": "error", "error": "authentication required"})

    @override_settings(REALTIME_TICKET_SEED_ERRORS=True)
    def test_seed_errors_setting_gives_the_seeds_anonymous_answer(self):
        for url in ("/ticket/", "/cbv/ticket/"):
            with self.subTest(url):
                response = self.post_ticket(self.anonymous_client(), url=url)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(self.json(response), SEED_ERROR)
        with override_settings(DEBUG=True):
            response = self.post_ticket(self.anonymous_client())
            self.assertEqual(
                self.json(response),
                {"status": "error", "message": "error while creating ticket: user not authenticated"},
            )
        self.assertEqual(self.ticket_keys(), [])

    @override_settings(REALTIME_TICKET_SEED_ERRORS=True)
    def test_seed_errors_setting_covers_redis_down(self):
        client = self.logged_in_client()
        self.redis_server.stop(kill=True)
        try:
            response = self.post_ticket(client)
        finally:
            self.redis_server.start()
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.json(response), SEED_ERROR)

    def test_seed_errors_setting_is_a_bool(self):
        with override_settings(REALTIME_TICKET_SEED_ERRORS="yes"):
            with self.assertRaises(ImproperlyConfigured):
                conf.seed_errors()


class SeedNamesTests(RedisTestCase):
    def test_public_names_import_from_the_seeds_places(self):
        from django_canal.middleware import RealtimeTicketMiddleware
        from django_canal.tickets import TicketError
        from realtime_ticket import RealtimeTicketError, RealtimeTicketMiddleware as M, RealtimeTicketView
        from realtime_ticket.middleware import RealtimeTicketMiddleware as M2
        from realtime_ticket.views import RealtimeTicketError as E2, RealtimeTicketView as V2

        self.assertIs(M, RealtimeTicketMiddleware)
        self.assertIs(M2, RealtimeTicketMiddleware)
        self.assertIs(RealtimeTicketError, TicketError)
        self.assertIs(E2, TicketError)
        self.assertIs(V2, RealtimeTicketView)

    def test_removed_internals_name_their_replacement(self):
        replacements = {
            "RealtimeTicket": "issue_ticket",
            "RealtimeTicketFactory": "issue_ticket",
            "RedisConnection": "REALTIME_TICKET_REDIS",
        }
        for module in ("realtime_ticket", "realtime_ticket.views"):
            for name, hint in replacements.items():
                with self.subTest(module=module, name=name):
                    with self.assertRaises(ImportError) as caught:
                        exec("from %s import %s" % (module, name), {})
                    self.assertIn(hint, str(caught.exception))
                    self.assertIn("django-canal", str(caught.exception))

    def test_unknown_names_are_attribute_errors(self):
        module = importlib.import_module("realtime_ticket")
        self.assertFalse(hasattr(module, "NoSuchThing"))
