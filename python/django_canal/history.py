"""Publish to groups with history from Django, as the Go servers do.

A group that keeps history (Go: ``layers.RedisOptions.History``) gives every
message a position, an offset counted from 1 plus an epoch, so that a browser
that reconnects gets what it missed. A plain ``group_send`` cannot give one:
it writes straight to the servers' queues. Publish with this module instead:

    from django_canal.history import publish
    publish("chat_lobby", {"type": "chat.message", "text": "hi"})  # -> (offset, epoch)

It runs the Go layer's own Lua script (scripts/publish.lua, the same bytes;
a Go test checks it) on the channels_redis layer of CHANNEL_LAYERS, so the
message reaches every member exactly as ``group_send`` would, Django
consumers included, with its position under the key "__canal_pos__"
({"offset", "epoch", "group"}), and is appended to the group's history in the
same step.

Which groups keep history, and how much, must be the same on both sides:

    REALTIME_HISTORY = [{"group": "chat_*", "size": 1000, "ttl": 600}]

"group" is a glob (fnmatch, as Go's path.Match for names without "/"),
"size" the messages kept (default 100), "ttl" their age bound in seconds
(default 300); the first match wins. Publishing to a group no rule names
raises NoHistory.
"""

import asyncio
import fnmatch
import os
import random
import secrets
import time

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

POSITION_KEY = "__canal_pos__"
DEFAULT_SIZE = 100
MAX_SIZE = 100000
DEFAULT_TTL = 300
META_TTL = 86400  # the epoch and offset outlive the messages (Go: HistoryMetaTTL)
ATTEMPTS = 64  # against other processes' publishers (Go: publishAttempts)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _script(name):
    with open(os.path.join(_HERE, "scripts", name), "rb") as f:
        return f.read().decode("utf-8")


PUBLISH_LUA = _script("publish.lua")
HISTORY_LUA = _script("history.lua")

# channels_redis' group_send for the queue keys on the other hosts.
_GROUP_SEND_LUA = """
local n = #KEYS
local score, expiry, cutoff = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local full = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
  if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], score, ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    full = full + 1
  end
end
return full"""


class NoHistory(ValueError):
    """The group keeps no history: no REALTIME_HISTORY rule names it."""


class PublishContention(RuntimeError):
    """Other publishers kept changing the group or its position."""


def rules():
    """REALTIME_HISTORY, validated, with defaults: a list of (glob, size, ttl)."""
    value = getattr(settings, "REALTIME_HISTORY", [])
    if not isinstance(value, (list, tuple)):
        raise ImproperlyConfigured("REALTIME_HISTORY must be a list of {'group', 'size', 'ttl'}")
    out = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or not isinstance(rule.get("group"), str) or not rule["group"]:
            raise ImproperlyConfigured("REALTIME_HISTORY[%d] needs a non-empty string 'group'" % i)
        size = rule.get("size", DEFAULT_SIZE) or DEFAULT_SIZE
        ttl = rule.get("ttl", DEFAULT_TTL) or DEFAULT_TTL
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_SIZE:
            raise ImproperlyConfigured(
                "REALTIME_HISTORY[%d]: 'size' must be an integer in 1..%d" % (i, MAX_SIZE))
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ImproperlyConfigured("REALTIME_HISTORY[%d]: 'ttl' must be positive seconds" % i)
        out.append((rule["group"], size, int(-(-ttl // 1))))
    return out


def rule_for(group):
    """(size, ttl) of the first rule matching group, or None."""
    for pattern, size, ttl in rules():
        if fnmatch.fnmatchcase(group, pattern):
            return size, ttl
    return None


def history_keys(layer, group):
    """The group's history keys: (meta hash, stream), as the Go layer names them."""
    stream = "%s:history:{%s}" % (layer.prefix, group)
    return stream + ":meta", stream


def _layer():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None or not hasattr(layer, "_map_channel_keys_to_connection"):
        raise ImproperlyConfigured(
            "django_canal.history needs CHANNEL_LAYERS with channels_redis' core "
            "RedisChannelLayer, on the Redis the Canal servers use"
        )
    return layer


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _prefix_length(layer):
    # channels_redis 4.2.1+ makes it a setting; before, it is always 12 bytes.
    serializer = getattr(layer, "_serializer", None)
    return getattr(serializer, "random_prefix_length", getattr(layer, "random_prefix_length", 12))


async def apublish(group, event, layer=None):
    """Send event to group's members, as group_send does, and append it to the
    group's history; returns its position, (offset, epoch)."""
    layer = layer or _layer()
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not event["type"]:
        raise ValueError("publish: the event needs a non-empty string 'type'")
    for key in ("__asgi_channel__", POSITION_KEY):
        if key in event:
            raise ValueError("publish: %r is reserved" % key)
    try:
        valid = layer.valid_group_name(group)
    except TypeError:  # channels 4 raises instead of returning False
        valid = False
    if not valid:
        raise ValueError("publish: invalid group name %r" % (group,))
    rule = rule_for(group)
    if rule is None:
        raise NoHistory("publish: group %r keeps no history (REALTIME_HISTORY)" % (group,))
    size, ttl = rule
    # The history entry: the layer's codec without the random prefix.
    entry = layer.serialize(dict(event))[_prefix_length(layer):]
    meta, stream = history_keys(layer, group)
    gkey = layer._group_key(group)
    index = layer.consistent_hash(group)
    conn = layer.connection(index)
    expected = (0, "")
    raw = members = None
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 3:
            await asyncio.sleep(random.random() * attempt / 1000.0)
        now = time.time()
        group_cutoff = int(now) - layer.group_expiry
        if members is None:
            await conn.zremrangebyscore(gkey, min=0, max=group_cutoff)
            raw = await conn.zrange(gkey, 0, -1)
            members = [_text(m) for m in raw]
        out = dict(event)
        out[POSITION_KEY] = {"offset": expected[0] + 1, "epoch": expected[1], "group": group}
        by_conn, bodies, caps = layer._map_channel_keys_to_connection(members, out)
        here = by_conn.get(index, [])
        keys = [meta, stream, gkey] + here
        args = [expected[0], expected[1], secrets.token_hex(8), entry, size, ttl,
                max(ttl, META_TTL), "1", group_cutoff, len(raw)]
        args += list(raw)
        args += [bodies[k] for k in here] + [caps[k] for k in here]
        args += [repr(now), int(layer.expiry), int(now) - int(layer.expiry)]
        reply = await conn.eval(PUBLISH_LUA, len(keys), *keys, *args)
        status, offset, epoch = int(reply[0]), int(_text(reply[1])), _text(reply[2])
        if status == 1:
            for other, okeys in by_conn.items():
                if other == index or not okeys:
                    continue
                oargs = [bodies[k] for k in okeys] + [caps[k] for k in okeys]
                oargs += [repr(now), int(layer.expiry), int(now) - int(layer.expiry)]
                await layer.connection(other).eval(_GROUP_SEND_LUA, len(okeys), *okeys, *oargs)
            return offset, epoch
        if status == 0:
            expected = (offset, epoch)  # another publisher went first, or a new epoch
        else:
            members = None  # the members changed: read them again
    raise PublishContention(
        "publish to %r: gave up after %d attempts: other publishers kept changing "
        "the group or its position" % (group, ATTEMPTS))


def publish(group, event, layer=None):
    """The synchronous apublish, for views and tasks."""
    return async_to_sync(apublish)(group, event, layer)
