from django.urls import path

from django_canal.views import ticket_view

# The seed's one route, under its URL name and django_canal's.
urlpatterns = [
    path("ticket/", ticket_view, name="realtime_ticket"),
    path("ticket/", ticket_view, name="realtime-ticket"),
]
