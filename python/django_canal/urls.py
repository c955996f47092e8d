from django.urls import path

from .views import auth_view, session_view, ticket_view

urlpatterns = [
    path("ticket/", ticket_view, name="realtime-ticket"),
    # django-realtime-ticket's name for the same view, so its templates' and
    # JavaScript's {% url "realtime_ticket" %} keep resolving.
    path("ticket/", ticket_view, name="realtime_ticket"),
    path("auth/", auth_view, name="realtime-auth"),
    path("session/", session_view, name="realtime-session"),
]
