"""Issuing single-use tickets.

A ticket is a random string handed to the browser, which presents it once to
the Canal WebSocket server. Redis holds only its SHA-256, under
REALTIME_TICKET_PREFIX, so reading the keys (a KEYS listing, a backup, the
MONITOR output of another command) never yields a usable ticket. The Go side
hashes what the browser sends and consumes the key with GETDEL, which makes
the ticket single-use.
"""

import hashlib
import json
import logging
import secrets
from typing import NamedTuple

import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from . import conf

logger = logging.getLogger("django_canal")

# 32 random bytes = 256 bits; token_urlsafe makes it 43 URL-safe characters.
TICKET_BYTES = 32
RESERVED_CLAIMS = ("id", "username")
# A collision of 256-bit tokens does not happen; the bound only keeps a
# misbehaving store (every SET NX refused) from looping forever.
MAX_ATTEMPTS = 3


class TicketError(Exception):
    """A ticket could not be issued."""


class TicketStoreUnavailable(TicketError):
    """Redis could not be reached or refused the write."""


class AnonymousUserError(TicketError, ValueError):
    """Tickets are only issued to authenticated users."""


class Ticket(NamedTuple):
    ticket: str
    expires_in: int

    def __repr__(self):
        # Keep the secret out of logs and tracebacks that print locals.
        return "Ticket(ticket='***', expires_in=%d)" % self.expires_in


def ticket_key(ticket, prefix=None):
    """The Redis key for a ticket: prefix + hex SHA-256 of its UTF-8 bytes."""
    if prefix is None:
        prefix = conf.prefix()
    return prefix + hashlib.sha256(ticket.encode("utf-8")).hexdigest()


def ticket_claims(user, request=None):
    """The JSON object stored for the user: id, username and hook claims."""
    claims = {"id": user.pk, "username": user.get_username()}
    hook = conf.claims_hook()
    if hook is not None:
        extra = hook(user, request)
        if extra is not None:
            if not isinstance(extra, dict):
                raise ImproperlyConfigured("REALTIME_TICKET_CLAIMS must return a dict")
            clash = [name for name in RESERVED_CLAIMS if name in extra]
            if clash:
                raise ImproperlyConfigured(
                    "REALTIME_TICKET_CLAIMS must not set %s" % ", ".join(clash)
                )
            claims.update(extra)
    return claims


def issue_ticket(user, request=None):
    """Store a fresh ticket for ``user`` in Redis and return it.

    Raises AnonymousUserError for anonymous users and TicketStoreUnavailable
    when Redis cannot be reached.
    """
    if user is None or not user.is_authenticated:
        raise AnonymousUserError("tickets are only issued to authenticated users")

    ttl = conf.expire()
    prefix = conf.prefix()
    # DjangoJSONEncoder so UUID primary keys and dates in claims serialise.
    value = json.dumps(
        ticket_claims(user, request), cls=DjangoJSONEncoder, separators=(",", ":")
    )
    client = conf.redis_client()

    for _ in range(MAX_ATTEMPTS):
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        try:
            # One command, so a key never exists without its expiry, and NX
            # so an existing ticket is never overwritten.
            created = client.set(ticket_key(ticket, prefix), value, ex=ttl, nx=True)
        except redis.RedisError as exc:
            logger.warning(
                "realtime ticket store unavailable: %s: %s", type(exc).__name__, exc
            )
            raise TicketStoreUnavailable("ticket store unavailable: %s" % exc) from exc
        if created:
            return Ticket(ticket, ttl)
    raise TicketError("could not store a unique ticket after %d attempts" % MAX_ATTEMPTS)
