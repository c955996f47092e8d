import json

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.http import require_POST
from django_canal.history import publish

MAX_POST = 500  # bytes of text, as the Go consumer's maxPost
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie  # the page POSTs to the ticket view with the CSRF token
def feed(request, group):
    if not request.user.is_authenticated:
        if not settings.FEED_DEMO_LOGIN:
            return HttpResponseForbidden("sign in first")
        user, _ = get_user_model().objects.get_or_create(username="reader")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    transport = request.GET.get("transport", "auto")
    if transport not in ("auto", "websocket", "sse"):
        transport = "auto"
    return render(request, "feed.html", {
        "group": group,
        "canal_url": settings.CANAL_URL,
        "transport": transport,
    })


@require_POST
def post(request, group):
    """What canal.js POSTs on an event stream (its postURL): {"text": "..."},
    published to the feed with history, as the Go consumer does for a WebSocket."""
    if not request.user.is_authenticated:
        return HttpResponseForbidden("sign in first")
    if not (group.startswith("feed_") or group.startswith("short_")):
        return HttpResponseBadRequest("no such feed")
    try:
        text = json.loads(request.body)["text"]
    except (ValueError, KeyError, TypeError):
        return HttpResponseBadRequest('send {"text": "..."}')
    if not isinstance(text, str) or not 0 < len(text.encode()) <= MAX_POST:
        return HttpResponseBadRequest("text: 1 to %d bytes" % MAX_POST)
    publish(group, {"type": "feed.item", "text": text, "by": request.user.get_username()})
    return HttpResponse(status=204)
