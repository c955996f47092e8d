import json
import socket
import time

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, SimpleTestCase, override_settings

from django_canal import conf
from django_canal.tickets import (
    AnonymousUserError,
    Ticket,
    TicketError,
    TicketStoreUnavailable,
    issue_ticket,
    ticket_key,
)

from .base import PREFIX, RedisTestCase, sha256_key
from .redis_server import free_port


def claims_with_role(user, request):
    return {"role": "member"}


def claims_overriding_id(user, request):
    return {"id": 0}


class RedisSettingsTests(RedisTestCase):
    def issued_in(self, db, **settings):
        with override_settings(**settings):
            ticket = issue_ticket(self.user)
        self.assertEqual(self.ticket_keys(db=db), [sha256_key(ticket.ticket)])
        return ticket

    def test_url_string(self):
        url = "redis://127.0.0.1:%d/2" % self.redis_server.port
        self.issued_in(2, REALTIME_TICKET_REDIS=url)

    def test_url_setting(self):
        url = "redis://127.0.0.1:%d/3" % self.redis_server.port
        self.issued_in(3, REALTIME_TICKET_REDIS=None, REALTIME_TICKET_REDIS_URL=url)

    def test_seed_dict_form(self):
        config = {"host": "127.0.0.1", "port": self.redis_server.port, "db": 1, "socket_timeout": 1}
        self.issued_in(1, REALTIME_TICKET_REDIS=config)

    def test_dict_form_with_password(self):
        self.redis.config_set("requirepass", "s3cret")
        try:
            config = {
                "host": "127.0.0.1",
                "port": self.redis_server.port,
                "db": 4,
                "password": "s3cret",
                "socket_timeout": 1,
            }
            with override_settings(REALTIME_TICKET_REDIS=config):
                ticket = issue_ticket(self.user)
            # Wrong password: an error from Redis, reported as unavailable.
            with override_settings(REALTIME_TICKET_REDIS=dict(config, password="wrong")):
                with self.assertRaises(TicketStoreUnavailable):
                    issue_ticket(self.user)
        finally:
            admin = self.redis_server.client(password="s3cret")
            admin.config_set("requirepass", "")
            admin.close()
        self.assertEqual(self.ticket_keys(db=4), [sha256_key(ticket.ticket)])

    def test_client_follows_setting_changes(self):
        port = self.redis_server.port
        with override_settings(REALTIME_TICKET_REDIS="redis://127.0.0.1:%d/5" % port):
            first = conf.redis_client()
            self.assertIs(conf.redis_client(), first)  # cached per configuration
        with override_settings(REALTIME_TICKET_REDIS="redis://127.0.0.1:%d/6" % port):
            self.assertIsNot(conf.redis_client(), first)

    def test_issue_ticket_value(self):
        request = RequestFactory().get("/room/1/")
        ticket = issue_ticket(self.user, request)
        self.assertIsInstance(ticket, Ticket)
        self.assertEqual(ticket.expires_in, 10)
        value = json.loads(self.redis.get(sha256_key(ticket.ticket)))
        self.assertEqual(value["id"], self.user.pk)
        self.assertEqual(value["username"], "alice")
        self.assertEqual(value["path"], "/room/1/")

    @override_settings(REALTIME_TICKET_CLAIMS=claims_with_role)
    def test_claims_callable(self):
        ticket = issue_ticket(self.user)
        value = json.loads(self.redis.get(sha256_key(ticket.ticket)))
        self.assertEqual(value, {"id": self.user.pk, "username": "alice", "role": "member"})

    @override_settings(REALTIME_TICKET_CLAIMS="tests.test_settings.claims_overriding_id")
    def test_claims_must_not_override_identity(self):
        with self.assertRaisesMessage(ImproperlyConfigured, "must not set id"):
            issue_ticket(self.user)
        self.assertEqual(self.ticket_keys(), [])

    @override_settings(REALTIME_TICKET_CLAIMS=None)
    def test_no_claims_hook(self):
        ticket = issue_ticket(self.user)
        raw = self.redis.get(sha256_key(ticket.ticket)).decode()
        self.assertEqual(raw, '{"id":%d,"username":"alice"}' % self.user.pk)

    def test_anonymous_refused(self):
        with self.assertRaises(AnonymousUserError) as caught:
            issue_ticket(AnonymousUser())
        self.assertIsInstance(caught.exception, ValueError)
        self.assertIsInstance(caught.exception, TicketError)
        self.assertEqual(self.ticket_keys(), [])


class UnreachableRedisTests(SimpleTestCase):
    def test_unreachable_redis_raises_ticket_error_fast(self):
        from django.contrib.auth.models import User

        user = User(pk=1, username="bob")
        for setting in ("redis://127.0.0.1:%d/0" % free_port(), {"port": free_port()}):
            with self.subTest(setting=setting), override_settings(REALTIME_TICKET_REDIS=setting):
                started = time.monotonic()
                with self.assertRaisesMessage(TicketError, "ticket store unavailable"):
                    issue_ticket(user)
                self.assertLess(time.monotonic() - started, 3.0)


    def test_hanging_redis_times_out_fast(self):
        """A Redis that accepts connections but never answers costs ~1 s."""
        from django.contrib.auth.models import User

        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            url = "redis://127.0.0.1:%d/0" % listener.getsockname()[1]
            with override_settings(REALTIME_TICKET_REDIS=url):
                started = time.monotonic()
                with self.assertRaises(TicketStoreUnavailable):
                    issue_ticket(User(pk=1, username="bob"))
                self.assertLess(time.monotonic() - started, 3.0)


class PlainTests(SimpleTestCase):
    def test_key_format(self):
        # sha256("abc") is a standard test vector: the Go side can use it too.
        self.assertEqual(
            ticket_key("abc", prefix=PREFIX),
            "canal:ticket:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        )

    def test_repr_hides_ticket(self):
        self.assertEqual(repr(Ticket("secret", 10)), "Ticket(ticket='***', expires_in=10)")

    @override_settings(REALTIME_TICKET_EXPIRE=0)
    def test_bad_expire(self):
        with self.assertRaises(ImproperlyConfigured):
            conf.expire()

    @override_settings(REALTIME_TICKET_REDIS=6379)
    def test_bad_redis_setting(self):
        with self.assertRaises(ImproperlyConfigured):
            conf.redis_config()

    def test_defaults(self):
        with override_settings():
            from django.conf import settings

            del settings.REALTIME_TICKET_EXPIRE
            self.assertEqual(conf.expire(), 10)
            self.assertEqual(conf.prefix(), "canal:ticket:")
            self.assertEqual(conf.redis_config(), ("url", "redis://localhost:6379/0"))

    def test_compat_package(self):
        import realtime_ticket
        import realtime_ticket.urls
        from django_canal.middleware import RealtimeTicketMiddleware
        from django_canal.views import ticket_view
        from realtime_ticket import RealtimeTicketMiddleware as Compat
        from realtime_ticket.views import ticket_view as compat_view

        self.assertIs(Compat, RealtimeTicketMiddleware)
        self.assertIs(compat_view, ticket_view)
        names = {p.name for p in realtime_ticket.urls.urlpatterns}
        self.assertEqual(names, {"realtime-ticket", "realtime_ticket"})
