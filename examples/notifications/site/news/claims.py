"""What canal needs to know about a user, put in the ticket by django_canal
(settings.REALTIME_TICKET_CLAIMS). canal.toml joins the socket to one group
per content type listed here: "ct_{user.content_types}"."""

from django.contrib.contenttypes.models import ContentType


def get_content_types(user):
    """Return the set of IDs of content types visible by user (the guide's)."""
    # This does only three database queries because Django caches
    # all permissions on the first call to user.has_perm(...).
    return {
        ct.id
        for ct in ContentType.objects.all()
        if user.has_perm(f"{ct.app_label}.view_{ct.model}")
        or user.has_perm(f"{ct.app_label}.change_{ct.model}")
    }


def ticket_claims(user, request):
    return {"is_staff": user.is_staff, "content_types": sorted(get_content_types(user))}
