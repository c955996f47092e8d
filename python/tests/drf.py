"""A site's own DRF authentication class (only imported where DRF imports)."""

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class RefusingTokenAuthentication(TokenAuthentication):
    """Refuses every token: proves the endpoint calls the site's class."""

    def authenticate_credentials(self, key):
        raise exceptions.AuthenticationFailed("refused by the site's own class")
