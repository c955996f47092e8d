from django.contrib import admin
from django.urls import include, path

from news import views

urlpatterns = [
    path("", views.events, name="events"),
    path("admin/", admin.site.urls),
    path("", include("django_canal.urls")),  # POST /ticket/
]
