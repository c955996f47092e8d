from django_canal.middleware import RealtimeTicketMiddleware  # noqa: F401
