"""Views of the Canal demo: the chat page and the "notify me" button."""

import json
import logging
import urllib.error
import urllib.request

from asgiref.sync import async_to_sync  # a dependency of Django itself
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

try:  # Channels is only needed once the Redis channel layer is used (below).
    from channels.layers import get_channel_layer
except ImportError:  # pragma: no cover - the demo runs without Channels
    get_channel_layer = None

log = logging.getLogger(__name__)

MAX_TEXT = 500  # characters of a notification


class NotifyError(Exception):
    """The Go server could not be asked to push a notification."""

    def __init__(self, message, status=502):
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


def send_to_user(user_id, text):
    """Deliver {"type": "notify", "text": text} to the group "user_<id>", which
    the Go server's /ws/notify/ consumer joins for each of the user's sockets."""
    # TODO(canal): once the Go server uses the Redis channel layer (layers.NewRedis),
    # Django can write to the group directly, as with Channels. Configure
    # CHANNEL_LAYERS in settings.py, then replace the next line with this one:
    # async_to_sync(get_channel_layer().group_send)("user_%s" % user_id, {"type": "notify", "text": text})
    post_to_canal(user_id, text)


# Until then, Django asks the Go server over HTTP. Proxies from the environment
# are ignored: this is a call to a neighbour, not to the internet.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_to_canal(user_id, text):
    """POST {"user_id", "text"} to the Go server's internal endpoint, with the
    shared secret in X-Canal-Secret."""
    secret = settings.CANAL_NOTIFY_SECRET
    if not secret:
        raise NotifyError(
            "notifications are not configured: set CANAL_NOTIFY_SECRET for Django "
            "and the Go server",
            status=503,
        )
    body = json.dumps({"user_id": str(user_id), "text": text}).encode("utf-8")
    req = urllib.request.Request(
        settings.CANAL_NOTIFY_URL,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Canal-Secret": secret},
    )
    try:
        with _opener.open(req, timeout=2) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise NotifyError("realtime server answered HTTP %d" % exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyError("realtime server unreachable: %s" % reason) from None
