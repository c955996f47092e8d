#!/bin/sh
# The article's demo in one command, from anywhere:
#
#   examples/article/run.sh
#
# Starts a private redis-server on 127.0.0.1:6390 (the channel layer), prepares
# the Django project in site/ (migrate; the article's user testuserone, password
# testing123, a superuser so that the admin works), serves it on
# http://127.0.0.1:8000/ and the Go server on ws://127.0.0.1:8001/, with a fresh
# shared secret. Ctrl-C stops all three. Needs Go and Debian's redis-server,
# python3-django, python3-djangorestframework,
# python3-djangorestframework-simplejwt, python3-django-channels,
# python3-channels-redis and python3-redis.
set -eu
cd "$(dirname "$0")"
PY=/usr/bin/python3
DJANGO_ADDR=${DJANGO_ADDR:-127.0.0.1:8000}
CANAL_ADDR=${CANAL_ADDR:-127.0.0.1:8001}
REDIS_PORT=${REDIS_PORT:-6390}

# The secret the Go server presents at Django's /auth/ (REALTIME_SESSION_TOKEN).
CANAL_SESSION_TOKEN=${CANAL_SESSION_TOKEN:-$($PY -c 'import secrets; print(secrets.token_urlsafe(32))')}
CANAL_WS_URL=ws://$CANAL_ADDR
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export CANAL_SESSION_TOKEN CANAL_WS_URL REDIS_URL

PIDS=
trap 'kill $PIDS 2>/dev/null || true' EXIT INT TERM
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --loglevel warning &
PIDS="$PIDS $!"

cd site
$PY manage.py migrate -v0
if ! $PY manage.py shell -c 'from django.contrib.auth.models import User; exit(0 if User.objects.filter(username="testuserone").exists() else 1)'; then
	DJANGO_SUPERUSER_PASSWORD=testing123 $PY manage.py createsuperuser --noinput \
		--username testuserone --email testuserone@example.com
fi
$PY manage.py runserver --noreload "$DJANGO_ADDR" &
PIDS="$PIDS $!"

cd ../../..
echo "Open http://$DJANGO_ADDR/ and log in as testuserone / testing123;"
echo "change something in http://$DJANGO_ADDR/admin/ and watch the page."
go run ./examples/article -addr "$CANAL_ADDR" -django "http://$DJANGO_ADDR" -redis "$REDIS_URL"
