"""Reach a user's live sockets on the Canal servers from Django.

Every authenticated Canal connection joins its user's group on the channel
layer ("canal.user.<pk>"), in whichever Go process serves it. A plain
``channel_layer.group_send`` to that group reaches all of the user's sockets,
so these helpers need nothing but the CHANNEL_LAYERS that Channels already
uses (channels_redis, shared with the Go servers):

    disconnect_user(user)               # close them: 4403
    send_to_user(user, {"type": "notify", "text": "hi"})
    refresh_user(user)                  # push fresh claims (permissions, groups)
    presence("chat_lobby")              # who is in a group

Each has an async twin (adisconnect_user, ...) for async views and consumers.
Reserved event types, handled by the Go consumer before the application's
own: "canal.disconnect" and "canal.refresh".
"""

import hashlib
import json
import re

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from . import conf

EVENT_DISCONNECT = "canal.disconnect"
EVENT_REFRESH = "canal.refresh"
RESERVED_EVENTS = (EVENT_DISCONNECT, EVENT_REFRESH)
DEFAULT_DISCONNECT_CODE = 4403
DEFAULT_PRESENCE_PREFIX = "canal:"

_PLAIN_ID = re.compile(r"\A[a-zA-Z0-9_.\-]{1,88}\Z")


def user_group(user):
    """The channel-layer group of a user (or of a primary key): the same name
    consumer.UserGroup computes in Go. Integer and UUID keys give
    "canal.user.<pk>"; other keys give "canal.userh.<hex SHA-256 of the key>"."""
    pk = getattr(user, "pk", user)
    if pk is None or pk == "":
        raise ValueError("user_group: the user has no primary key (anonymous?)")
    text = str(pk)
    if _PLAIN_ID.match(text):
        return "canal.user." + text
    return "canal.userh." + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _layer():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured(
            "django_canal.realtime needs CHANNEL_LAYERS (channels_redis on the Redis "
            "the Canal servers use)"
        )
    return layer


def _valid_code(code):
    return code in (1000, 1001, 1003, 1007, 1008, 1011, 1013) or 3000 <= code <= 4999


async def adisconnect_user(user, code=DEFAULT_DISCONNECT_CODE, reason=""):
    """Close every socket of ``user`` on every Canal server."""
    if isinstance(code, bool) or not isinstance(code, int) or not _valid_code(code):
        raise ValueError("disconnect_user: %r is not a close code an application may send" % (code,))
    if len(reason.encode("utf-8")) > 123:
        raise ValueError("disconnect_user: the reason must fit in 123 bytes")
    await _layer().group_send(
        user_group(user), {"type": EVENT_DISCONNECT, "code": code, "reason": reason}
    )


async def asend_to_user(user, event):
    """Send a layer event to every socket of ``user``; the Go consumer handles
    it like any group event (by its "type")."""
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not event["type"]:
        raise ValueError('send_to_user: the event must be a dict with a "type"')
    if event["type"] in RESERVED_EVENTS:
        raise ValueError("send_to_user: event type %r is reserved" % event["type"])
    await _layer().group_send(user_group(user), event)


def user_claims(user):
    """The claims a refresh pushes: the ticket's (id, username and
    REALTIME_TICKET_CLAIMS), as JSON text."""
    from .tickets import ticket_claims

    return json.dumps(ticket_claims(user), cls=DjangoJSONEncoder, separators=(",", ":"))


async def arefresh_user(user):
    """Recompute ``user``'s claims and push them to their live sockets, whose
    Scope.User changes at once (and the consumer's UserChanged hook runs).
    A user who may no longer log in (is_active off) is disconnected instead."""
    if not getattr(user, "is_active", True):
        await adisconnect_user(user, DEFAULT_DISCONNECT_CODE, "inactive")
        return
    # The claims hook may query the database (the websockets guide's content types
    # do), which Django refuses inside a coroutine: run it as sync code.
    claims = await sync_to_async(user_claims)(user)
    await _layer().group_send(user_group(user), {"type": EVENT_REFRESH, "user": claims})


def disconnect_selected(modeladmin, request, queryset):
    """Admin action for a user model's admin: close the selected users' sockets
    on every Canal server (4403 "disconnected by an admin").

        class UserAdmin(django.contrib.auth.admin.UserAdmin):
            actions = [realtime.disconnect_selected]
    """
    count = 0
    for user in queryset:
        disconnect_user(user, DEFAULT_DISCONNECT_CODE, "disconnected by an admin")
        count += 1
    modeladmin.message_user(request, "Disconnected %d user(s) from the realtime server." % count)


disconnect_selected.short_description = "Disconnect from the realtime server"


def presence_prefix():
    value = getattr(settings, "REALTIME_PRESENCE_PREFIX", DEFAULT_PRESENCE_PREFIX)
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured("REALTIME_PRESENCE_PREFIX must be a non-empty string")
    return value


def presence(group, client=None):
    """Who is in ``group``, as the Go servers' presence.NewRedis records it:
    a list of {"id", "username", "claims", "connections", "joined_at"} (Unix
    seconds, a float), earliest first. Entries of Go processes whose liveness
    key is gone (crashed) are left out. Reads REALTIME_TICKET_REDIS unless
    ``client`` (a redis.Redis) is given."""
    client = client or conf.redis_client()
    prefix = presence_prefix()
    fields = client.hgetall(prefix + "presence:" + group)
    by_process = {}
    for field, value in fields.items():
        field = field.decode() if isinstance(field, bytes) else field
        if field.startswith("#") or ":" not in field:
            continue
        process = field.split(":", 1)[0]
        by_process.setdefault(process, []).append(value)
    conns = []
    processes = list(by_process)
    if processes:
        pipe = client.pipeline(transaction=False)
        for process in processes:
            pipe.exists(prefix + "presence.alive:" + process)
        for process, alive in zip(processes, pipe.execute()):
            if not alive:
                continue
            for value in by_process[process]:
                try:
                    entry = json.loads(value)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("id"):
                    conns.append(entry)
    conns.sort(key=lambda e: e.get("at", 0))
    users = {}
    for c in conns:
        u = users.get(c["id"])
        if u is None:
            u = users[c["id"]] = {
                "id": c["id"],
                "username": c.get("username", ""),
                "claims": {},
                "connections": 0,
                "joined_at": c.get("at", 0) / 1000.0,
            }
        u["connections"] += 1
        u["username"] = c.get("username", "")
        u["claims"] = c.get("claims") or {}
    return sorted(users.values(), key=lambda u: (u["joined_at"], u["id"]))


def disconnect_user(user, code=DEFAULT_DISCONNECT_CODE, reason=""):
    """Close every socket of ``user`` on every Canal server (sync)."""
    async_to_sync(adisconnect_user)(user, code, reason)


def send_to_user(user, event):
    """Send a layer event to every socket of ``user`` (sync)."""
    async_to_sync(asend_to_user)(user, event)


def refresh_user(user):
    """Push ``user``'s fresh claims to their live sockets (sync)."""
    async_to_sync(arefresh_user)(user)

__all__ = [
    "user_group",
    "disconnect_user",
    "adisconnect_user",
    "send_to_user",
    "asend_to_user",
    "refresh_user",
    "arefresh_user",
    "user_claims",
    "disconnect_selected",
    "presence",
    "EVENT_DISCONNECT",
    "EVENT_REFRESH",
]
