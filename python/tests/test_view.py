import json
import logging

from django.test import override_settings

from .base import RedisTestCase, sha256_key


class TicketViewTests(RedisTestCase):
    def test_anonymous_gets_403_json(self):
        response = self.post_ticket(self.anonymous_client())
        self.assertEqual(response.status_code, 403)
        self.assertEqual(
            self.json(response), {"status": "error", "error": "authentication required"}
        )
        self.assertEqual(self.ticket_keys(), [])

    def test_get_is_405(self):
        client = self.logged_in_client()
        response = client.get("/ticket/")
        self.assertEqual(response.status_code, 405)
        self.assertEqual(response["Allow"], "POST")
        self.assertEqual(self.ticket_keys(), [])

    def test_missing_csrf_token_is_403(self):
        response = self.post_ticket(self.logged_in_client(), csrf=False)
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.ticket_keys(), [])

    def test_wrong_csrf_token_is_403(self):
        client = self.logged_in_client()
        response = client.post("/ticket/", HTTP_X_CSRFTOKEN="x" * 64)
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.ticket_keys(), [])

    def test_ticket_response_has_seed_and_canal_shapes(self):
        response = self.post_ticket(self.logged_in_client())
        self.assertEqual(response.status_code, 200)
        body = self.json(response)
        self.assertEqual(set(body), {"status", "message", "ticket", "expires_in"})
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["message"], body["ticket"])  # the seed's field
        self.assertEqual(body["expires_in"], 10)
        # token_urlsafe(32): 43 characters of the URL-safe base64 alphabet.
        self.assertRegex(body["ticket"], r"^[A-Za-z0-9_-]{43}$")
        self.assertIn("no-store", response["Cache-Control"])

    def test_redis_holds_only_the_hash(self):
        ticket = self.json(self.post_ticket(self.logged_in_client()))["ticket"]
        key = sha256_key(ticket)
        self.assertEqual(self.ticket_keys(), [key])
        self.assertEqual(self.redis.exists(ticket), 0)
        for name in self.redis.keys("*"):
            self.assertNotIn(ticket.encode(), name)
            self.assertNotIn(ticket.encode(), self.redis.get(name))

    def test_value_is_compact_json_with_claims(self):
        ticket = self.json(self.post_ticket(self.logged_in_client()))["ticket"]
        raw = self.redis.get(sha256_key(ticket)).decode()
        self.assertNotIn(" ", raw)
        self.assertEqual(
            json.loads(raw),
            {
                "id": self.user.pk,
                "username": "alice",
                "email": "alice@example.com",
                "staff": False,
                "path": "/ticket/",
            },
        )

    def test_ttl_is_set_and_bounded(self):
        ticket = self.json(self.post_ticket(self.logged_in_client()))["ticket"]
        ttl = self.redis.ttl(sha256_key(ticket))
        self.assertGreater(ttl, 0)
        self.assertLessEqual(ttl, 10)

    @override_settings(REALTIME_TICKET_EXPIRE=3, REALTIME_TICKET_PREFIX="site1:t:")
    def test_expire_and_prefix_settings(self):
        body = self.json(self.post_ticket(self.logged_in_client()))
        self.assertEqual(body["expires_in"], 3)
        key = sha256_key(body["ticket"], prefix="site1:t:")
        self.assertEqual(self.ticket_keys(), [key])
        self.assertTrue(0 < self.redis.ttl(key) <= 3)

    def test_each_request_gets_a_new_ticket(self):
        client = self.logged_in_client()
        first = self.json(self.post_ticket(client))["ticket"]
        second = self.json(self.post_ticket(client))["ticket"]
        self.assertNotEqual(first, second)
        self.assertEqual(self.ticket_keys(), sorted([sha256_key(first), sha256_key(second)]))

    def test_single_atomic_set_ex_nx(self):
        """MONITOR sees exactly one SET key value EX ttl NX and no expiry command."""
        client = self.logged_in_client()
        sentinel = "canal-monitor-end"
        with self.redis_server.client().monitor() as monitor:
            ticket = self.json(self.post_ticket(client))["ticket"]
            self.redis.echo(sentinel)
            commands = []
            while True:
                command = monitor.next_command()["command"]
                if sentinel in command:
                    break
                commands.append(command)

        key = sha256_key(ticket)
        sets = [c for c in commands if c.split(" ", 1)[0].upper() == "SET"]
        self.assertEqual(len(sets), 1, commands)
        self.assertTrue(sets[0].startswith("SET %s {" % key), sets[0])
        self.assertTrue(sets[0].endswith("} EX 10 NX"), sets[0])
        expiring = {"EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "SETEX", "PSETEX", "SETNX"}
        self.assertEqual([c for c in commands if c.split(" ", 1)[0].upper() in expiring], [])
        # The ticket itself never travels to Redis, only its hash.
        self.assertEqual([c for c in commands if ticket in c], [])

    def test_ticket_is_never_logged(self):
        records = []

        class Collect(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())

        handler = Collect(level=logging.DEBUG)
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            client = self.logged_in_client()
            ticket = self.json(self.post_ticket(client))["ticket"]
            self.redis_server.stop()
            try:
                self.assertEqual(self.post_ticket(client).status_code, 503)
            finally:
                self.redis_server.start()
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
        self.assertTrue(records, "expected some log output (at least the 503 warning)")
        self.assertEqual([m for m in records if ticket in m], [])

    def test_compat_url(self):
        response = self.post_ticket(self.logged_in_client(), url="/compat/ticket/")
        self.assertEqual(response.status_code, 200)
        body = self.json(response)
        self.assertEqual(self.ticket_keys(), [sha256_key(body["message"])])

