from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render


@staff_member_required
def events(request):
    return render(request, "news/events.html", {"canal": {"ws_url": settings.CANAL_WS_URL}})
