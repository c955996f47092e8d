"""Signal handlers of the Canal demo."""

import logging

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from .views import NotifyError, send_to_user

log = logging.getLogger(__name__)

# The close code the sockets get when their user logs out: 4403, "forbidden" in
# the 4000-4999 range that applications define. The page takes it as "go to the
# login page" rather than "reconnect".
CLOSE_LOGGED_OUT = 4403


@receiver(user_logged_out)
def close_sockets_on_logout(sender, request, user, **kwargs):
    """Close every socket of the user that just logged out, on the Go server:
    Canal's consumers close with the given code on a "websocket.close" event,
    as Channels' do. Every session of the user loses its sockets, since the
    sockets are grouped by user; their tickets need a session to be renewed."""
    if user is None:  # logging out an anonymous session
        return
    try:
        send_to_user(user.pk, {"type": "websocket.close", "code": CLOSE_LOGGED_OUT})
    except NotifyError as exc:
        # The logout itself must not fail: the sockets then stay open until they
        # close by themselves, and cannot get a new ticket.
        log.warning("logout of user %s: sockets not closed: %s", user.pk, exc)
