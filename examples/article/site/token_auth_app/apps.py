from django.apps import AppConfig


class TokenAuthAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "token_auth_app"

    def ready(self):
        from . import signals  # noqa: F401 (connects publish_event)
