import hashlib
import json

from django.contrib.auth import get_user_model
from django.test import Client, TestCase, override_settings

from .redis_server import RedisServer

PREFIX = "canal:ticket:"


def sha256_key(ticket, prefix=PREFIX):
    return prefix + hashlib.sha256(ticket.encode()).hexdigest()


class RedisTestCase(TestCase):
    """A TestCase with its own redis-server, which the app is pointed at."""

    @classmethod
    def setUpClass(cls):
        cls.redis_server = RedisServer().start()
        cls.addClassCleanup(cls.redis_server.close)
        cls.redis_settings = override_settings(REALTIME_TICKET_REDIS=cls.redis_server.url)
        cls.redis_settings.enable()
        cls.addClassCleanup(cls.redis_settings.disable)
        super().setUpClass()

    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user(
            "alice", "alice@example.com", "alice-password"
        )

    def setUp(self):
        self.redis = self.redis_server.client()
        self.redis.flushall()
        self.addCleanup(self.redis.close)

    # -- browser-like helpers: always with CSRF checks, as in production --

    def anonymous_client(self):
        client = Client(enforce_csrf_checks=True)
        client.get("/login/")  # sets the csrftoken cookie
        return client

    def logged_in_client(self):
        client = self.anonymous_client()
        response = client.post(
            "/login/",
            {
                "username": "alice",
                "password": "alice-password",
                "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
            },
        )
        self.assertEqual(response.status_code, 302, "login failed")
        return client

    def post_ticket(self, client, url="/ticket/", csrf=True):
        extra = {}
        if csrf:
            # Login rotates the token; the cookie always holds the current one.
            extra["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
        return client.post(url, **extra)

    def json(self, response):
        self.assertEqual(response["Content-Type"], "application/json")
        return json.loads(response.content.decode())

    def ticket_keys(self, db=0, server=None):
        client = (server or self.redis_server).client(db=db)
        try:
            return sorted(k.decode() for k in client.keys("*"))
        finally:
            client.close()
