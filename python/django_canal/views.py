import hmac
import json
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import conf
from .tickets import TicketStoreUnavailable, issue_ticket, ticket_claims


# POST only, so that CsrfViewMiddleware guards it: a cross-site page must not
# be able to mint tickets for the visitor. never_cache because a ticket in a
# shared cache would let another client use it.
@never_cache
@require_POST
def ticket_view(request):
    """Issue a ticket for the logged-in user.

    200 {"status": "ok", "message": ticket, "ticket": ticket, "expires_in": s}
    ("message" is the seed project's field, kept for its JavaScript clients);
    403 for anonymous users and 503 when Redis is down, both as JSON.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        # JSON rather than a login redirect: the caller is JavaScript.
        return JsonResponse({"status": "error", "error": "authentication required"}, status=403)
    try:
        ticket = issue_ticket(user, request)
    except TicketStoreUnavailable:
        return JsonResponse({"status": "error", "error": "ticket store unavailable"}, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "message": ticket.ticket,
            "ticket": ticket.ticket,
            "expires_in": ticket.expires_in,
        }
    )


class _SessionOnly:
    """The part of a request django.contrib.auth.get_user reads."""

    def __init__(self, session):
        self.session = session


# Called by the Go server, not by browsers: no cookie, no CSRF token, a bearer
# secret instead (so csrf_exempt is safe). POST keeps the session key out of
# URLs and access logs.
@csrf_exempt
@never_cache
@require_POST
def session_view(request):
    """Resolve a session key to its user, for Canal's middleware.Session.

    Request: Authorization: Bearer <REALTIME_SESSION_TOKEN>, JSON body
    {"session_key": "..."}. Answers 200 {"user": {"id", "username", ...claims}}
    for a logged-in session and 200 {"user": null} for anything else (expired,
    logged out, unknown, password changed since); 401 for a wrong or missing
    token; 404 while REALTIME_SESSION_TOKEN is unset; 400 for a bad body.
    """
    token = conf.session_token()
    if token is None:
        return JsonResponse({"error": "session endpoint disabled"}, status=404)
    presented = request.META.get("HTTP_AUTHORIZATION", "")
    if not hmac.compare_digest(presented.encode(), ("Bearer " + token).encode()):
        return JsonResponse({"error": "bad token"}, status=401)
    try:
        body = json.loads(request.body.decode("utf-8"))
        key = body["session_key"]
        if not isinstance(key, str) or not key:
            raise ValueError
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return JsonResponse({"error": "want a JSON body {\"session_key\": \"...\"}"}, status=400)
    # The site's own session engine and checks, as for any request: expiry,
    # the backend, and the password hash that ends sessions at a password change.
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    user = get_user(_SessionOnly(store))
    if not user.is_authenticated:
        return JsonResponse({"user": None})
    return JsonResponse({"user": ticket_claims(user)}, encoder=DjangoJSONEncoder)
