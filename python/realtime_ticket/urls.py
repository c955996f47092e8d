from django_canal.urls import urlpatterns  # noqa: F401  (same "ticket/" route)
