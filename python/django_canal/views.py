from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .tickets import TicketStoreUnavailable, issue_ticket


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
