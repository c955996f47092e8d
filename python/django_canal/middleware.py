import logging

from django.utils.deprecation import MiddlewareMixin

from .tickets import TicketError, issue_ticket

logger = logging.getLogger("django_canal")

CONTEXT_NAME = "realtime_ticket"


def ticket_or_none(request):
    """A fresh ticket string for request.user, or None (anonymous, Redis down)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    try:
        return issue_ticket(user, request).ticket
    except TicketError:
        # issue_ticket has already logged why; the page still renders.
        return None


class RealtimeTicketMiddleware(MiddlewareMixin):
    """Adds ``realtime_ticket`` (a ticket string or None) to the context of
    TemplateResponses.

    Meant for single views, as in the seed project, so that tickets are only
    created where a page opens a WebSocket::

        @method_decorator(decorator_from_middleware(RealtimeTicketMiddleware))
        def dispatch(self, *args, **kwargs): ...

    Installed in MIDDLEWARE it would issue a ticket for every TemplateResponse.
    Needs request.user, i.e. AuthenticationMiddleware.
    """

    def process_template_response(self, request, response):
        if response.context_data is None:
            response.context_data = {}
        response.context_data[CONTEXT_NAME] = ticket_or_none(request)
        return response
