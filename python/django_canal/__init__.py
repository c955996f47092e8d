"""Django side of Canal: short-lived, single-use tickets in Redis that
authorize Django users on a Canal WebSocket server.

The public API is importable lazily so that ``import django_canal`` works
before Django's settings are configured.
"""

__version__ = "0.1.0"

__all__ = [
    "Ticket",
    "TicketError",
    "TicketStoreUnavailable",
    "AnonymousUserError",
    "issue_ticket",
    "RealtimeTicketMiddleware",
]


def __getattr__(name):
    # Lazy re-exports (PEP 562): the middleware pulls in django.http, which
    # must not be imported merely by reading the package version.
    if name == "RealtimeTicketMiddleware":
        from .middleware import RealtimeTicketMiddleware

        return RealtimeTicketMiddleware
    if name in __all__:
        from . import tickets

        return getattr(tickets, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
