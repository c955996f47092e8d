from django.urls import include, path

from . import views

urlpatterns = [
    path("feed/<slug:group>/", views.feed, name="feed"),
    path("realtime/", include("django_canal.urls")),
]
