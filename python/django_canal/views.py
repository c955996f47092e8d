import hmac
import json
import logging

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from . import conf, credentials
from .tickets import TicketStoreUnavailable, issue_ticket, ticket_claims

logger = logging.getLogger("django_canal")

# The longest credential /auth/ reads: a signed-cookie session or a JWT with
# many claims stays far below it, and a larger body is not a credential.
MAX_CREDENTIAL = 8192


# POST only, so that CsrfViewMiddleware guards it: a cross-site page must not
# be able to mint tickets for the visitor. never_cache because a ticket in a
# shared cache would let another client use it.
@never_cache
@require_POST
def ticket_view(request):
    """Issue a ticket for the logged-in user.

    200 {"status": "ok", "message": ticket, "ticket": ticket, "expires_in": s}
    ("message" is the seed project's field, kept for its JavaScript clients);
    403 for anonymous users and 503 when Redis is down, both as JSON; with
    REALTIME_TICKET_SEED_ERRORS, both are django-realtime-ticket's 200
    {"status": "error", "message": "error while creating ticket"}.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        # JSON rather than a login redirect: the caller is JavaScript.
        return _ticket_error(403, "authentication required", "user not authenticated")
    try:
        ticket = issue_ticket(user, request)
    except TicketStoreUnavailable:
        return _ticket_error(503, "ticket store unavailable", "ticket store unavailable")
    return JsonResponse(
        {
            "status": "ok",
            "message": ticket.ticket,
            "ticket": ticket.ticket,
            "expires_in": ticket.expires_in,
        }
    )


def _ticket_error(status, error, seed_reason):
    if conf.seed_errors():
        # The seed's answer: always 200, the reason only under DEBUG.
        message = "error while creating ticket"
        if settings.DEBUG:
            message += ": " + seed_reason
        return JsonResponse({"status": "error", "message": message})
    return JsonResponse({"status": "error", "error": error}, status=status)


class _BadRequest(Exception):
    pass


def _bearer_ok(request):
    token = conf.session_token()
    presented = request.META.get("HTTP_AUTHORIZATION", "")
    if presented:
        # Django's error reports and its log record of a 5xx answer (which
        # AdminEmailHandler mails) show request.META, and do not mask this header.
        request.META["HTTP_AUTHORIZATION"] = "********"
    return hmac.compare_digest(presented.encode(), ("Bearer " + token).encode())


@sensitive_variables()
def _read_body(request):
    """(kind, credential) from {"kind": k, "credential": c}, or ("session", key)
    from /session/'s historical {"session_key": key}."""
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest("body is not JSON") from exc
    if not isinstance(body, dict):
        raise _BadRequest("body is not a JSON object")
    if "session_key" in body and "credential" not in body and "kind" not in body:
        kind, credential = "session", body["session_key"]
    else:
        kind, credential = body.get("kind"), body.get("credential")
    if not isinstance(kind, str) or not kind:
        raise _BadRequest('want a JSON body {"kind": "...", "credential": "..."}')
    if not isinstance(credential, str) or not credential:
        raise _BadRequest('want a JSON body {"kind": "...", "credential": "..."}')
    if len(credential) > MAX_CREDENTIAL:
        raise _BadRequest("credential longer than %d characters" % MAX_CREDENTIAL)
    return kind, credential


@sensitive_variables()
def _answer(request, only_kind=None):
    if conf.session_token() is None:
        return JsonResponse({"error": "credential endpoint disabled"}, status=404)
    if not _bearer_ok(request):
        return JsonResponse({"error": "bad token"}, status=401)
    try:
        kind, credential = _read_body(request)
    except _BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if only_kind is not None and kind != only_kind:
        return JsonResponse({"error": "this endpoint only checks %s credentials" % only_kind}, status=400)
    try:
        user = credentials.resolve(request, kind, credential)
    except credentials.UnknownKind:
        return JsonResponse({"error": "unknown kind", "kind": kind[:64]}, status=400)
    except credentials.KindUnavailable as exc:
        return JsonResponse({"error": "kind not available", "detail": str(exc)}, status=400)
    except Exception as exc:
        # Answered here rather than by Django's 500 handler, whose error report
        # would quote the exception, and a database error's message can quote
        # the credential. The Go side fails closed on any 500.
        message = str(exc).replace(credential, "***")
        logger.error("realtime auth: checking a %r credential failed: %s: %s", kind[:64], type(exc).__name__, message)
        return JsonResponse({"error": "internal error"}, status=500)
    if user is None:
        return JsonResponse({"user": None})
    return JsonResponse({"user": ticket_claims(user)}, encoder=DjangoJSONEncoder)


# Called by the Go server, not by browsers: no cookie, no CSRF token, a bearer
# secret instead (so csrf_exempt is safe). POST keeps credentials out of URLs
# and access logs.
@csrf_exempt
@never_cache
@require_POST
def auth_view(request):
    """Resolve a credential of any enabled kind to its user, for Canal's
    auth.Django verifier.

    Request: Authorization: Bearer <REALTIME_SESSION_TOKEN>, JSON body
    {"kind": "session"|"drf"|"simplejwt"|"sesame"|..., "credential": "..."}
    (kinds: REALTIME_AUTH_KINDS). Answers 200 {"user": {"id", "username",
    ...claims}} (the object a ticket holds) when the credential identifies an
    active user, 200 {"user": null} when it identifies nobody; 401 for a wrong
    or missing bearer token; 404 while REALTIME_SESSION_TOKEN is unset; 400 for
    a bad body, an unknown kind, or a kind whose package does not import; 500
    when the check itself failed (a database that is down).
    """
    return _answer(request)


@csrf_exempt
@never_cache
@require_POST
def session_view(request):
    """The session kind of auth_view, for clients of the first session
    endpoint: {"session_key": "..."} (or {"kind": "session", "credential":
    "..."}), with the same answers."""
    return _answer(request, only_kind="session")
