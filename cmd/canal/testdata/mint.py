"""Mints credentials as a Django site would, for the token kinds' e2e test.
Usage: mint.py signed|jwt SECRET_KEY  (prints the token)"""
import sys

import django
from django.conf import settings

kind, key = sys.argv[1], sys.argv[2]
settings.configure(
    SECRET_KEY=key,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    SIMPLE_JWT={"SIGNING_KEY": key},
    USE_TZ=True,
)
django.setup()

if kind == "signed":
    from django.core import signing

    print(signing.dumps({"user_id": 5, "username": "dora", "is_staff": True}, salt="canal.socket"))
else:
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken()
    token["user_id"] = 6
    token["username"] = "eve"
    token["is_staff"] = True
    print(str(token))
