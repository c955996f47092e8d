from django.views.generic import View

from django_canal.tickets import TicketError as RealtimeTicketError  # noqa: F401
from django_canal.views import ticket_view  # noqa: F401

from . import REMOVED, removed


class RealtimeTicketView(View):
    """The seed's class-based ticket view: POST answers as django_canal's
    ticket_view (the seed's {"status": "ok", "message": ticket} included)."""

    http_method_names = ["post", "options"]

    def post(self, request, *args, **kwargs):
        return ticket_view(request)


def __getattr__(name):
    if name in REMOVED:
        raise removed(__name__, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
