from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "Canal demo"

    def ready(self):
        from . import signals  # noqa: F401  (connects the logout handler)
