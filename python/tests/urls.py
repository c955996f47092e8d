from django.contrib.auth.views import LoginView
from django.urls import include, path
from django.views.generic import TemplateView

from .views import ChatView, chat_function_view

urlpatterns = [
    path("", include("django_canal.urls")),
    path("compat/", include("realtime_ticket.urls")),
    path("login/", LoginView.as_view(), name="login"),
    path("chat/", ChatView.as_view(), name="chat"),
    path("chat-fn/", chat_function_view, name="chat-fn"),
    path("tag/", TemplateView.as_view(template_name="tag.html"), name="tag"),
]
