"""Drop-in replacement for the django-realtime-ticket package.

Existing sites keep ``'realtime_ticket'`` in INSTALLED_APPS,
``include('realtime_ticket.urls')`` (URL name ``realtime_ticket``) and
``from realtime_ticket import RealtimeTicketMiddleware``; the settings
REALTIME_TICKET_EXPIRE and REALTIME_TICKET_REDIS keep their meaning. Tickets
are now issued by django_canal (Redis stores the ticket's SHA-256, see its
README), which is what the Canal server expects.

The seed's other public names: ``RealtimeTicketView`` (the view class) and
``RealtimeTicketError`` (django_canal's TicketError) still import; its
internals ``RealtimeTicket``, ``RealtimeTicketFactory`` and ``RedisConnection``
raise an ImportError that names their replacement.
"""

__all__ = ["RealtimeTicketMiddleware", "RealtimeTicketView", "RealtimeTicketError"]

# The seed's internals, which stored the ticket itself as the Redis key: a
# subclass of them would write tickets Canal cannot redeem, so they are gone.
REMOVED = {
    "RealtimeTicket": "django_canal.tickets.issue_ticket(user, request) (and REALTIME_TICKET_CLAIMS "
    "for the stored value)",
    "RealtimeTicketFactory": "django_canal.tickets.issue_ticket(user, request)",
    "RedisConnection": "the REALTIME_TICKET_REDIS setting (django_canal.conf.redis_client())",
}


def removed(module, name):
    return ImportError(
        "%s.%s of django-realtime-ticket is gone in django-canal: use %s"
        % (module, name, REMOVED[name]),
        name=module,
    )


def __getattr__(name):
    # Lazy, so that listing the app in INSTALLED_APPS imports nothing heavy.
    if name == "RealtimeTicketMiddleware":
        from django_canal.middleware import RealtimeTicketMiddleware

        return RealtimeTicketMiddleware
    if name in ("RealtimeTicketView", "RealtimeTicketError"):
        from . import views

        return getattr(views, name)
    if name in REMOVED:
        raise removed(__name__, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
