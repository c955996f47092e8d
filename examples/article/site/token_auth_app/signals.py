"""The websockets guide's "Publish events", through the channel layer.

Every change made in the admin is saved as a LogEntry; each one is sent to
the group "events", which the Go server's event sockets joined. The event is
the guide's, as JSON text the sockets relay unchanged; content_type_id rides
beside it so that the Go side can pick the recipients without parsing it.
"""

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.admin.models import LogEntry
from django.db.models.signals import post_save
from django.dispatch import receiver

logger = logging.getLogger(__name__)


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
    message = {"type": "admin.event", "content_type_id": instance.content_type_id, "payload": json.dumps(event)}
    try:
        async_to_sync(get_channel_layer().group_send)("events", message)
    except Exception as exc:  # Redis down: the admin's change stands, the event is lost
        logger.warning("admin event not published: %s: %s", type(exc).__name__, exc)
