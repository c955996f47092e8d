from django.contrib import admin
from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from token_auth_app.views import index, sesame_token

urlpatterns = [
    path("", index),
    path("admin/", admin.site.urls),
    # The article's login: username and password in, {"token": "..."} out.
    path("api/login/", obtain_auth_token),
    # simplejwt's pair of views, as its documentation mounts them.
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    # A 30-second sesame token for the logged-in user (the websockets guide).
    path("api/sesame/", sesame_token),
    # django_canal's POST /auth/, for the Go server.
    path("", include("django_canal.urls")),
]
