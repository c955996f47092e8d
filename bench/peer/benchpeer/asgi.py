"""ASGI application of the Channels peer, served by Daphne:

    daphne -b 127.0.0.1 -p PORT benchpeer.asgi:application
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchpeer.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .auth import TicketAuthMiddleware  # noqa: E402
from .consumers import BenchConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "websocket": TicketAuthMiddleware(
            URLRouter([path("ws/bench/", BenchConsumer.as_asgi())])
        ),
    }
)
