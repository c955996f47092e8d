from django.urls import include, path

from . import views

urlpatterns = [
    path("feed/<slug:group>/", views.feed, name="feed"),
    path("feed/<slug:group>/post/", views.post, name="feed-post"),
    path("realtime/", include("django_canal.urls")),
]
