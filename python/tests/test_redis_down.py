import time

from .base import RedisTestCase, sha256_key


class RedisDownTests(RedisTestCase):
    def test_503_fast_then_recovers_on_restart(self):
        client = self.logged_in_client()
        self.assertEqual(self.post_ticket(client).status_code, 200)  # pool is warm

        self.redis_server.stop(kill=True)  # a crash, not a clean shutdown
        try:
            for _ in range(2):  # the stale pooled connection, then a fresh connect
                started = time.monotonic()
                response = self.post_ticket(client)
                elapsed = time.monotonic() - started
                self.assertEqual(response.status_code, 503)
                self.assertEqual(
                    self.json(response), {"status": "error", "error": "ticket store unavailable"}
                )
                self.assertLess(elapsed, 3.0)

            # Pages still render, just without a ticket.
            page = client.get("/chat/")
            self.assertEqual(page.status_code, 200)
            self.assertIsNone(page.context_data["realtime_ticket"])
            page = client.get("/tag/")
            self.assertContains(page, "no ticket")
        finally:
            self.redis_server.start()  # same port

        response = self.post_ticket(client)
        self.assertEqual(response.status_code, 200)
        ticket = self.json(response)["ticket"]
        self.assertEqual(self.ticket_keys(), [sha256_key(ticket)])
