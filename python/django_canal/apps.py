from django.apps import AppConfig


class DjangoCanalConfig(AppConfig):
    name = "django_canal"
    label = "django_canal"
    verbose_name = "Canal realtime tickets"

    def ready(self):
        # REALTIME_USER_SIGNALS (off by default) is read on each signal.
        from django.apps import apps

        if apps.is_installed("django.contrib.auth"):
            from . import signals

            signals.connect()
