"""Django's side of consumer's two-process test: django_canal.realtime over a
real channels_redis, run as

    python3 django_users.py REDIS_URL disconnect|refresh|presence ARGS...

disconnect ID CODE REASON; refresh ID USERNAME IS_STAFF(0/1); presence GROUP
(prints the JSON list).
"""

import json
import sys

import django
from django.conf import settings


def main():
    url, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django_canal"],
        DATABASES={},
        CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}},
        REALTIME_TICKET_REDIS=url,
        REALTIME_TICKET_CLAIMS=lambda user, request: {"is_staff": user.is_staff},
    )
    django.setup()
    from django.contrib.auth.models import User

    from django_canal import realtime

    if command == "disconnect":
        realtime.disconnect_user(int(args[0]), int(args[1]), args[2])
    elif command == "refresh":
        realtime.refresh_user(User(pk=int(args[0]), username=args[1], is_staff=args[2] == "1"))
    elif command == "presence":
        print(json.dumps(realtime.presence(args[0])))
    else:
        sys.exit("unknown command %r" % command)


if __name__ == "__main__":
    main()
