from django.conf import settings
from django.shortcuts import render
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import sesame


def index(request):
    """The article's testing_html.html, served by Django."""
    return render(request, "token_auth_app/index.html", {"ws_url": settings.CANAL_WS_URL})


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def sesame_token(request):
    """A short-lived sesame token for the user of the request's DRF token, for
    the socket that authenticates with its first message."""
    return Response({"token": sesame.get_token(request.user)})
