"""Views of the Canal demo: the chat page and the "notify me" button."""

import asyncio
import logging

from asgiref.sync import async_to_sync  # a dependency of Django itself
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST
from django_canal import realtime
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

MAX_TEXT = 500  # characters of a notification
MAX_ROOM = 64  # characters of a room name, as the Go server allows

# What group_send raises when Redis cannot be reached (channels_redis talks to it
# through redis-py's asyncio client).
LAYER_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class NotifyError(Exception):
    """The channel layer could not take the notification."""

    def __init__(self, message, status=503):
        super().__init__(message)
        self.status = status


@never_cache
@ensure_csrf_cookie  # the page's JavaScript sends this token with its POSTs
@login_required
def index(request, room="lobby"):
    """The chat page of a room (/ is the lobby, /room/<slug>/ any other). Its
    JavaScript gets tickets from POST /ticket/ and opens its sockets on the Go
    server (settings.CANAL_WS_URL)."""
    if len(room) > MAX_ROOM:
        raise Http404("room name too long")
    config = {
        "ws_url": settings.CANAL_WS_URL,
        "room": room,
        "username": request.user.get_username(),
        "login_url": settings.LOGIN_URL,
    }
    context = {"canal": config, "online": online(room)}
    return render(request, "demo/index.html", context)


def room_group(room):
    """The group of a chat room, as the Go server's chat consumer names it."""
    return "chat_" + room


def online(room):
    """Who is in the room now, from the presence the Go servers keep in Redis
    (django_canal.realtime.presence): [{"id": "1", "username": "alice"}, ...],
    earliest first, or None when Redis cannot be reached. The page shows it
    until its socket sends the live list."""
    try:
        entries = realtime.presence(room_group(room))
    except LAYER_ERRORS as exc:
        log.warning("presence of room %s: %s", room, type(exc).__name__)
        return None
    return [{"id": e["id"], "username": e["username"]} for e in entries]


@never_cache
@require_POST
@login_required
def notify(request):
    """POST /notify/: push a notification to every socket of the logged-in user."""
    text = (request.POST.get("text") or "").strip()
    if not text:
        text = "Hello %s, this notification came from Django." % request.user.get_username()
    text = text[:MAX_TEXT]
    try:
        send_to_user(request.user.pk, text)
    except NotifyError as exc:
        log.warning("notify user %s: %s", request.user.pk, exc)
        return JsonResponse({"status": "error", "error": str(exc)}, status=exc.status)
    return JsonResponse({"status": "ok"})


def user_group(user_id):
    """The group of a user's sockets. The Go server's consumers join it on both
    routes (/ws/chat/<room>/ and /ws/notify/)."""
    return "user_%s" % user_id


def send_to_user(user_id, event):
    """group_send event to every socket of the user, the Channels way: the Go
    server's consumers in the group "user_<id>" get it through Redis. A str is
    a notification, {"type": "notify", "text": event}."""
    if isinstance(event, str):
        event = {"type": "notify", "text": event}
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), event)
    except LAYER_ERRORS as exc:
        raise NotifyError("channel layer unavailable: %s" % type(exc).__name__) from None
