"""Ticket authentication for the Channels peer: the same contract as Canal's
middleware.Ticket with TransportQuery (python/README.md, "Ticket format").

The ticket arrives as ?ticket=T; the key is REALTIME_TICKET_PREFIX + sha256(T) in hex,
consumed with one GETDEL; the value is {"id": ..., "username": ...}. A missing, unknown
or used ticket leaves scope["user"] as None and the consumer refuses the handshake (403),
as Canal does.
"""
import hashlib
import json
import re
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from django.conf import settings

_WELL_FORMED = re.compile(r"^[A-Za-z0-9_-]{1,512}$")


class TicketAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner
        self._redis = None

    def _client(self):
        # Created on first use, inside Daphne's event loop.
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(settings.REDIS_URL)
        return self._redis

    async def _consume(self, ticket):
        if not _WELL_FORMED.match(ticket):
            return None
        key = settings.REALTIME_TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()
        raw = await self._client().getdel(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(value, dict) or not value.get("username"):
            return None
        return value

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tickets = query.get("ticket") or [""]
        scope["user"] = await self._consume(tickets[0])
        return await self.inner(scope, receive, send)
