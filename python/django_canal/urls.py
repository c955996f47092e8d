from django.urls import path

from .views import session_view, ticket_view

urlpatterns = [
    path("ticket/", ticket_view, name="realtime-ticket"),
    path("session/", session_view, name="realtime-session"),
]
