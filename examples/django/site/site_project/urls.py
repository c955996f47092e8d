"""URLs of the Canal demo site."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("room/<slug:room>/", views.index, name="room"),
    path("notify/", views.notify, name="notify"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The User admin has the "disconnect from the realtime server" action.
    path("admin/", admin.site.urls),
    # POST /ticket/: a single-use ticket for the Go server (django_canal).
    path("", include("django_canal.urls")),
]
