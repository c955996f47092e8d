"""Views of the Canal demo: the chat page and the "notify me" button."""

import asyncio
import logging

from asgiref.sync import async_to_sync  # a dependency of Django itself
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

MAX_TEXT = 500  # characters of a notification

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
def index(request):
    """The chat page. Its JavaScript gets tickets from POST /ticket/ and opens
    its sockets on the Go server (settings.CANAL_WS_URL)."""
    config = {
        "ws_url": settings.CANAL_WS_URL,
        "room": "lobby",
        "username": request.user.get_username(),
        "login_url": settings.LOGIN_URL,
    }
    return render(request, "demo/index.html", {"canal": config})


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
