from django_canal.views import ticket_view  # noqa: F401
