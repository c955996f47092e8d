"""The guide's "Publish events", unchanged but for the Redis client: redis-py
(python3-redis) instead of django-redis, which Debian does not package."""

import json

import redis
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.db.models.signals import post_save
from django.dispatch import receiver

_connection = None


def get_redis_connection():
    global _connection
    if _connection is None:
        _connection = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _connection


@receiver(post_save, sender=LogEntry)
def publish_event(instance, **kwargs):
    event = {
        "model": instance.content_type.name,
        "object": instance.object_repr,
        "message": instance.get_change_message(),
        "timestamp": instance.action_time.isoformat(),
        "user": str(instance.user),
        "content_type_id": instance.content_type_id,
        "object_id": instance.object_id,
    }
    connection = get_redis_connection()
    payload = json.dumps(event)
    connection.publish("events", payload)
