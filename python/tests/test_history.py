"""django_canal.history over a real channels_redis and redis-server.

A probe channel joins the group, as a Go connection does, and reads what
Django published. The Go side (layers.Redis reading these positions and this
history) is tested in Go: layers/redis_history_test.go runs this module.
"""

import asyncio
import os
import time

import msgpack
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_canal import history

from .base import RedisTestCase

RULES = [{"group": "chat_*", "size": 5, "ttl": 60}]
HERE = os.path.dirname(os.path.abspath(__file__))


class HistoryTestCase(RedisTestCase):
    def setUp(self):
        super().setUp()
        settings = override_settings(
            CHANNEL_LAYERS={
                "default": {
                    "BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [self.redis_server.url]},
                }
            },
            REALTIME_HISTORY=RULES,
        )
        settings.enable()
        self.addCleanup(settings.disable)

    def layer(self):
        return RedisChannelLayer(hosts=[self.redis_server.url])

    def join(self, group, channel):
        async def add():
            await self.layer().group_add(group, channel)
        async_to_sync(add)()

    def drain(self, channel, want):
        async def go():
            layer = self.layer()
            return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(want)]
        return async_to_sync(go)()

    def publish_all(self, group, events):
        async def go():
            layer = self.layer()
            return [await history.apublish(group, e, layer) for e in events]
        return async_to_sync(go)()

    def stream(self, group):
        meta, stream = history.history_keys(self.layer(), group)
        return self.redis.hgetall(meta), self.redis.xrange(stream)

    def test_publish_positions_live_and_history(self):
        self.join("chat_room", "probe.a")
        self.join("chat_room", "specific.0123!x")
        first = history.publish("chat_room", {"type": "chat.message", "text": "one"})
        second = history.publish("chat_room", {"type": "chat.message", "text": "two"})
        self.assertEqual(first[0], 1)
        self.assertEqual(second, (2, first[1]))
        self.assertEqual(len(first[1]), 16)
        got = self.drain("probe.a", 2)
        self.assertEqual([m["text"] for m in got], ["one", "two"])
        for i, m in enumerate(got):
            self.assertEqual(m[history.POSITION_KEY],
                             {"offset": i + 1, "epoch": first[1], "group": "chat_room"})
        # The other process's queue key got its copy too.
        self.assertEqual(self.redis.zcard("asgispecific.0123!"), 2)
        meta, entries = self.stream("chat_room")
        self.assertEqual(meta, {b"s": b"2", b"e": first[1].encode()})
        self.assertEqual([e[0] for e in entries], [b"1-0", b"2-0"])
        # Entries hold the bare event, in the layer's codec.
        self.assertEqual(msgpack.unpackb(entries[0][1][b"d"], raw=False),
                         {"type": "chat.message", "text": "one"})

    def test_size_bound_and_expiry(self):
        for i in range(8):
            history.publish("chat_room", {"type": "x", "n": i})
        meta, entries = self.stream("chat_room")
        self.assertEqual([e[0] for e in entries], [b"4-0", b"5-0", b"6-0", b"7-0", b"8-0"])
        meta_key, stream_key = history.history_keys(self.layer(), "chat_room")
        self.assertTrue(0 < self.redis.ttl(stream_key) <= 60)
        self.assertTrue(60 < self.redis.ttl(meta_key) <= history.META_TTL)

    def test_history_lost_new_epoch(self):
        _, epoch = history.publish("chat_room", {"type": "x"})
        self.redis.flushall()
        offset, epoch2 = history.publish("chat_room", {"type": "x"})
        self.assertEqual(offset, 1)
        self.assertNotEqual(epoch, epoch2)

    def test_concurrent_publishers_get_distinct_ordered_offsets(self):
        self.join("chat_room", "probe.a")

        async def go():
            layers = [self.layer() for _ in range(4)]
            return await asyncio.gather(*[
                history.apublish("chat_room", {"type": "x", "n": i}, layers[i % 4])
                for i in range(40)
            ])
        positions = async_to_sync(go)()
        self.assertEqual(sorted(p[0] for p in positions), list(range(1, 41)))
        self.assertEqual(len({p[1] for p in positions}), 1)
        got = self.drain("probe.a", 40)
        self.assertEqual([m[history.POSITION_KEY]["offset"] for m in got], list(range(1, 41)))

    def test_member_joining_between_read_and_script_is_served(self):
        # The script checks the members the publisher read: a change makes it
        # read them again, so a member that joined is not left out.
        self.join("chat_room", "probe.a")
        layer = self.layer()
        real = layer.connection

        def connection(index):
            conn = real(index)
            zrange = conn.zrange

            async def racing(*args, **kwargs):
                out = await zrange(*args, **kwargs)
                if not getattr(connection, "done", False):
                    connection.done = True
                    await conn.zadd("asgi:group:chat_room", {"probe.b": time.time()})
                return out
            conn.zrange = racing
            return conn
        layer.connection = connection
        async_to_sync(history.apublish)("chat_room", {"type": "x"}, layer)
        self.assertEqual(len(self.drain("probe.b", 1)), 1)
        self.assertEqual(len(self.drain("probe.a", 1)), 1)

    def test_errors(self):
        with self.assertRaises(history.NoHistory):
            history.publish("news", {"type": "x"})
        for event in ({}, {"type": ""}, {"type": "x", "__canal_pos__": 1},
                      {"type": "x", "__asgi_channel__": "c"}):
            with self.assertRaises(ValueError):
                history.publish("chat_room", event)
        with self.assertRaises(ValueError):
            history.publish("chat room", {"type": "x"})
        self.assertEqual(self.redis.keys("*"), [])  # nothing was written
        for bad in ("x", [{"size": 1}], [{"group": "a", "size": 0.5}],
                    [{"group": "a", "size": history.MAX_SIZE + 1}], [{"group": "a", "ttl": -1}]):
            with override_settings(REALTIME_HISTORY=bad):
                with self.assertRaises(ImproperlyConfigured):
                    history.rules()

    def test_scripts_are_the_go_layers(self):
        for name in ("publish.lua", "history.lua"):
            go = os.path.join(HERE, "..", "..", "layers", "scripts", name)
            if not os.path.exists(go):  # an installed copy without the Go tree
                continue
            with open(go, "rb") as f:
                self.assertEqual(f.read().decode(), history._script(name))
