"""Keep the sockets honest: opt-in reactions to account changes.

With ``REALTIME_USER_SIGNALS = True`` in settings, django_canal closes or
refreshes a user's live Canal sockets, in every Go process, when Django
changes what the user may do:

- ``user_logged_out``: the user's sockets close with 4403 "logged out";
- the password changes, or ``is_active`` is turned off: close with 4403;
- the user's groups or permissions change, or a group's permissions change:
  the claims are refreshed (``refresh_user``), so Scope.User follows without
  a reconnect.

A layer that cannot be reached never breaks the logout or the save: the
failure is logged (without secrets) and the sockets stay until they end.
The handlers are connected by the app's ready() and read the setting on
each call, so override_settings works in tests.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import m2m_changed, post_save, pre_save

from . import realtime

logger = logging.getLogger("django_canal")

_M2M_ACTIONS = ("post_add", "post_remove", "post_clear")


def enabled():
    return getattr(settings, "REALTIME_USER_SIGNALS", False) is True


def _safely(what, user, call, *args):
    try:
        call(user, *args)
    except Exception as exc:  # the logout or save must go on
        logger.warning(
            "realtime %s for user %s failed: %s", what, getattr(user, "pk", "?"), type(exc).__name__
        )


def on_logged_out(sender, request=None, user=None, **kwargs):
    if enabled() and user is not None and user.pk is not None:
        _safely("disconnect", user, realtime.disconnect_user, realtime.DEFAULT_DISCONNECT_CODE, "logged out")


def on_user_pre_save(sender, instance, raw=False, **kwargs):
    # Remember what the row held, so post_save can tell what changed.
    if not enabled() or raw or instance.pk is None:
        return
    old = sender._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    instance._canal_before = old


def on_user_post_save(sender, instance, created=False, raw=False, **kwargs):
    old = instance.__dict__.pop("_canal_before", None)
    if not enabled() or raw or created or old is None:
        return
    if old["is_active"] and not instance.is_active:
        _safely("disconnect", instance, realtime.disconnect_user, realtime.DEFAULT_DISCONNECT_CODE, "inactive")
    elif old["password"] != instance.password:
        _safely("disconnect", instance, realtime.disconnect_user, realtime.DEFAULT_DISCONNECT_CODE, "password changed")


def on_user_m2m(sender, instance, action, reverse, model, pk_set, **kwargs):
    """user.groups / user.user_permissions changed (either side of the relation)."""
    if not enabled() or action not in _M2M_ACTIONS:
        return
    User = get_user_model()
    if not reverse:
        users = [instance]
    elif action == "post_clear":
        # pk_set is None on clear: we cannot know who was removed any more.
        return
    else:
        users = User._default_manager.filter(pk__in=pk_set or ())
    for user in users:
        _safely("refresh", user, realtime.refresh_user)


def on_group_permissions(sender, instance, action, reverse, model, pk_set, **kwargs):
    """group.permissions changed: refresh every member of the group(s)."""
    if not enabled() or action not in _M2M_ACTIONS:
        return
    User = get_user_model()
    if reverse:
        groups = pk_set or ()
    else:
        groups = [instance.pk]
    for user in User._default_manager.filter(groups__pk__in=groups).distinct():
        _safely("refresh", user, realtime.refresh_user)


def connect():
    """Connect the handlers (idempotent: dispatch_uid)."""
    User = get_user_model()
    user_logged_out.connect(on_logged_out, dispatch_uid="django_canal.logged_out")
    pre_save.connect(on_user_pre_save, sender=User, dispatch_uid="django_canal.user_pre_save")
    post_save.connect(on_user_post_save, sender=User, dispatch_uid="django_canal.user_post_save")
    if hasattr(User, "groups"):
        m2m_changed.connect(on_user_m2m, sender=User.groups.through, dispatch_uid="django_canal.user_groups")
    if hasattr(User, "user_permissions"):
        m2m_changed.connect(
            on_user_m2m, sender=User.user_permissions.through, dispatch_uid="django_canal.user_permissions"
        )
    m2m_changed.connect(on_group_permissions, sender=Group.permissions.through, dispatch_uid="django_canal.group_permissions")
