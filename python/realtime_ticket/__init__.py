"""Drop-in replacement for the django-realtime-ticket package.

Existing sites keep ``'realtime_ticket'`` in INSTALLED_APPS,
``include('realtime_ticket.urls')`` and
``from realtime_ticket import RealtimeTicketMiddleware``; the settings
REALTIME_TICKET_EXPIRE and REALTIME_TICKET_REDIS keep their meaning. Tickets
are now issued by django_canal (Redis stores the ticket's SHA-256, see its
README), which is what the Canal server expects.
"""

__all__ = ["RealtimeTicketMiddleware"]


def __getattr__(name):
    # Lazy, so that listing the app in INSTALLED_APPS imports nothing heavy.
    if name == "RealtimeTicketMiddleware":
        from django_canal.middleware import RealtimeTicketMiddleware

        return RealtimeTicketMiddleware
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
