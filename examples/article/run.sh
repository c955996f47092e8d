#!/bin/sh
# The article's demo in one command, from anywhere:
#
#   examples/article/run.sh
#
# Prepares the Django project in site/ (migrate; the article's user testuserone,
# password testing123), serves it on http://127.0.0.1:8000/ and the Go server
# on ws://127.0.0.1:8001/, with a fresh shared secret. Ctrl-C stops both.
# Needs Debian's python3-django, python3-djangorestframework,
# python3-djangorestframework-simplejwt and python3-redis, and Go.
set -eu
cd "$(dirname "$0")"
PY=/usr/bin/python3
DJANGO_ADDR=${DJANGO_ADDR:-127.0.0.1:8000}
CANAL_ADDR=${CANAL_ADDR:-127.0.0.1:8001}

# The secret the Go server presents at Django's /auth/ (REALTIME_SESSION_TOKEN).
CANAL_SESSION_TOKEN=${CANAL_SESSION_TOKEN:-$($PY -c 'import secrets; print(secrets.token_urlsafe(32))')}
CANAL_WS_URL=ws://$CANAL_ADDR
export CANAL_SESSION_TOKEN CANAL_WS_URL

cd site
$PY manage.py migrate -v0
if ! $PY manage.py shell -c 'from django.contrib.auth.models import User; exit(0 if User.objects.filter(username="testuserone").exists() else 1)'; then
	DJANGO_SUPERUSER_PASSWORD=testing123 $PY manage.py createsuperuser --noinput \
		--username testuserone --email testuserone@example.com
fi
$PY manage.py runserver --noreload "$DJANGO_ADDR" &
DJANGO_PID=$!
trap 'kill $DJANGO_PID 2>/dev/null || true' EXIT INT TERM

cd ../../..
echo "Open http://$DJANGO_ADDR/ and log in as testuserone / testing123"
go run ./examples/article -addr "$CANAL_ADDR" -django "http://$DJANGO_ADDR"
