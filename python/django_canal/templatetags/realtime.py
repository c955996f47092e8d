from django import template

from ..middleware import ticket_or_none

register = template.Library()


@register.simple_tag(takes_context=True)
def realtime_ticket(context):
    """``{% load realtime %}{% realtime_ticket as t %}``: a fresh ticket string
    for the logged-in user, or None (anonymous user, Redis down, or a template
    rendered without a request).

    Every use issues a new ticket, so use it once per page, with ``as``.
    """
    request = getattr(context, "request", None) or context.get("request")
    if request is None:
        return None
    return ticket_or_none(request)
