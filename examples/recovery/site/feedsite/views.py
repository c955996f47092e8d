from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.http import HttpResponseForbidden
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
