"""django_canal.realtime and django_canal.signals over a real channels_redis.

The Go side of these messages (consumer.UserGroup, the reserved events) is
tested in Go, including a run against these very functions
(consumer/twoproc_test.go). Here a probe channel joins the user's group and
reads what Django sent, as a Go consumer would.
"""

import json
import time
import uuid

from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import override_settings

from django_canal import realtime

from .base import RedisTestCase

PROBE = "probe.user"


class RealtimeTestCase(RedisTestCase):
    def setUp(self):
        super().setUp()
        layers = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [self.redis_server.url]},
            }
        }
        settings = override_settings(CHANNEL_LAYERS=layers)
        settings.enable()
        self.addCleanup(settings.disable)

    def probe(self, user):
        """Join PROBE to the user's group, as a Go connection of the user does."""
        async def add():
            layer = RedisChannelLayer(hosts=[self.redis_server.url])
            await layer.group_add(realtime.user_group(user), PROBE)
        async_to_sync(add)()

    def received(self, timeout=2.0):
        """The messages waiting on PROBE (none within timeout gives [])."""
        async def drain():
            import asyncio

            layer = RedisChannelLayer(hosts=[self.redis_server.url])
            out = []
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic() if not out else 0.2
                if left <= 0:
                    return out
                try:
                    out.append(await asyncio.wait_for(layer.receive(PROBE), left))
                except asyncio.TimeoutError:
                    return out
        return async_to_sync(drain)()


class UserGroupTests(RealtimeTestCase):
    def test_names_match_go(self):
        u = uuid.UUID("6f1c2a4e-0b7d-4d5e-9a0f-3c2b1a0d9e8f")
        cases = [
            (42, "canal.user.42"),
            ("42", "canal.user.42"),
            (u, "canal.user.6f1c2a4e-0b7d-4d5e-9a0f-3c2b1a0d9e8f"),
            # The SHA-256 consumer.UserGroup's test pins for the same key.
            ("a b", "canal.userh.c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65"),
        ]
        for pk, want in cases:
            self.assertEqual(realtime.user_group(pk), want)
        self.assertEqual(realtime.user_group(self.user), "canal.user.%d" % self.user.pk)
        self.assertTrue(realtime.user_group("x" * 89).startswith("canal.userh."))

    def test_anonymous_has_no_group(self):
        from django.contrib.auth.models import AnonymousUser

        with self.assertRaises(ValueError):
            realtime.user_group(AnonymousUser())


class AddressingTests(RealtimeTestCase):
    def test_disconnect_user(self):
        self.probe(self.user)
        realtime.disconnect_user(self.user, reason="bye")
        self.assertEqual(self.received(), [{"type": "canal.disconnect", "code": 4403, "reason": "bye"}])

    def test_disconnect_refuses_bad_input(self):
        for code in (1006, 999, 5000, True, "4403"):
            with self.assertRaises(ValueError, msg=repr(code)):
                realtime.disconnect_user(self.user, code)
        with self.assertRaises(ValueError):
            realtime.disconnect_user(self.user, 4403, "é" * 62)

    def test_send_to_user(self):
        self.probe(self.user)
        realtime.send_to_user(self.user, {"type": "notify", "text": "hi"})
        self.assertEqual(self.received(), [{"type": "notify", "text": "hi"}])
        for bad in ({"type": "canal.refresh"}, {"type": "canal.disconnect"}, {"text": "no type"}, "notify"):
            with self.assertRaises(ValueError, msg=repr(bad)):
                realtime.send_to_user(self.user, bad)

    def test_refresh_user_sends_ticket_claims(self):
        self.probe(self.user)
        self.user.is_staff = True
        self.user.save()
        realtime.refresh_user(self.user)
        [msg] = self.received()
        self.assertEqual(msg["type"], "canal.refresh")
        self.assertEqual(
            json.loads(msg["user"]),
            {"id": self.user.pk, "username": "alice", "email": "alice@example.com", "staff": True, "path": None},
        )

    def test_refresh_of_inactive_user_disconnects(self):
        self.probe(self.user)
        self.user.is_active = False
        realtime.refresh_user(self.user)
        self.assertEqual(self.received(), [{"type": "canal.disconnect", "code": 4403, "reason": "inactive"}])


class AdminActionTests(RealtimeTestCase):
    def test_disconnect_selected(self):
        class Admin:
            messages = []

            def message_user(self, request, message):
                self.messages.append(message)

        bob = get_user_model().objects.create_user("bob", "bob@example.com", "bob-password")
        self.probe(self.user)
        self.probe(bob)
        admin = Admin()
        realtime.disconnect_selected(admin, None, get_user_model().objects.filter(pk__in=[self.user.pk, bob.pk]))
        want = {"type": "canal.disconnect", "code": 4403, "reason": "disconnected by an admin"}
        self.assertEqual(self.received(), [want, want])
        self.assertEqual(admin.messages, ["Disconnected 2 user(s) from the realtime server."])


class PresenceTests(RealtimeTestCase):
    """Entries written as presence.NewRedis writes them (presence/doc.go)."""

    def write(self, process, channel, uid, username, at, claims=None):
        value = {"at": at, "id": uid, "username": username}
        if claims:
            value["claims"] = claims
        self.redis.hset("canal:presence:room", "%s:%s" % (process, channel), json.dumps(value))
        self.redis.hincrby("canal:presence:room", "#" + uid, 1)

    def test_live_processes_only_aggregated(self):
        self.redis.set("canal:presence.alive:aaaa", "1")
        self.write("aaaa", "c1", "1", "alice", 1000, {"avatar": "a.png"})
        self.write("aaaa", "c2", "1", "alice", 3000, {"avatar": "a.png"})
        self.write("aaaa", "c3", "2", "bob", 2000)
        self.write("dead", "c4", "3", "carol", 500)  # no liveness key: crashed
        self.assertEqual(
            realtime.presence("room"),
            [
                {"id": "1", "username": "alice", "claims": {"avatar": "a.png"}, "connections": 2, "joined_at": 1.0},
                {"id": "2", "username": "bob", "claims": {}, "connections": 1, "joined_at": 2.0},
            ],
        )

    def test_empty_group(self):
        self.assertEqual(realtime.presence("nobody-here"), [])

    @override_settings(REALTIME_PRESENCE_PREFIX="")
    def test_bad_prefix(self):
        from django.core.exceptions import ImproperlyConfigured

        with self.assertRaises(ImproperlyConfigured):
            realtime.presence("room")


@override_settings(REALTIME_USER_SIGNALS=True)
class SignalTests(RealtimeTestCase):
    def expect(self, *messages):
        self.assertEqual(self.received(), list(messages))

    def test_logout_disconnects(self):
        client = self.logged_in_client()
        self.probe(self.user)
        client.logout()
        self.expect({"type": "canal.disconnect", "code": 4403, "reason": "logged out"})

    def test_password_change_disconnects(self):
        self.probe(self.user)
        user = get_user_model().objects.get(pk=self.user.pk)
        user.set_password("another-password")
        user.save()
        self.expect({"type": "canal.disconnect", "code": 4403, "reason": "password changed"})

    def test_deactivation_disconnects(self):
        self.probe(self.user)
        user = get_user_model().objects.get(pk=self.user.pk)
        user.is_active = False
        user.save()
        self.expect({"type": "canal.disconnect", "code": 4403, "reason": "inactive"})

    def test_other_saves_send_nothing(self):
        self.probe(self.user)
        user = get_user_model().objects.get(pk=self.user.pk)
        user.first_name = "Alice"
        user.save()
        self.assertEqual(self.received(timeout=0.3), [])

    def test_group_and_permission_changes_refresh(self):
        self.probe(self.user)
        editors = Group.objects.create(name="editors")
        perm = Permission.objects.get(codename="change_user")
        steps = [
            lambda: self.user.groups.add(editors),
            lambda: editors.user_set.remove(self.user),  # the reverse side
            lambda: self.user.user_permissions.add(perm),
            lambda: self.user.groups.add(editors),
            lambda: editors.permissions.add(perm),  # a group's permissions
        ]
        for i, step in enumerate(steps):
            step()
            [msg] = self.received()
            self.assertEqual(msg["type"], "canal.refresh", "step %d" % i)
            self.assertEqual(json.loads(msg["user"])["id"], self.user.pk)

    @override_settings(REALTIME_USER_SIGNALS=False)
    def test_off_by_default(self):
        client = self.logged_in_client()
        self.probe(self.user)
        client.logout()
        self.user.set_password("x-password-2")
        self.user.save()
        self.assertEqual(self.received(timeout=0.3), [])

    @override_settings(CHANNEL_LAYERS={})
    def test_layer_missing_never_breaks_logout(self):
        client = self.logged_in_client()
        with self.assertLogs("django_canal", "WARNING") as logs:
            client.logout()
        self.assertIn("disconnect", logs.output[0])
        self.assertNotIn("password", " ".join(logs.output))
