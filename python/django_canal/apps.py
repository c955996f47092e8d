from django.apps import AppConfig


class DjangoCanalConfig(AppConfig):
    name = "django_canal"
    label = "django_canal"
    verbose_name = "Canal realtime tickets"
