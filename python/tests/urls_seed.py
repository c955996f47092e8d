"""The urlconf of a django-realtime-ticket site, as its README writes it
(url(r'', include('realtime_ticket.urls')), in today's path() form), plus the
seed's class-based view mounted by hand."""

from django.contrib.auth.views import LoginView
from django.urls import include, path

from realtime_ticket.views import RealtimeTicketView

urlpatterns = [
    path("", include("realtime_ticket.urls")),
    path("login/", LoginView.as_view(), name="login"),
    path("cbv/ticket/", RealtimeTicketView.as_view(), name="cbv-ticket"),
]
