#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
#
# What it does, in order:
#   1. Installs what the suites need from Debian's packages if missing (apt-get; needs
#      root or sudo): redis-server, python3-django (3.2), python3-django-channels,
#      python3-channels-redis, python3-daphne, python3-redis, python3-msgpack,
#      python3-cryptography, python3-djangorestframework, python3-djangorestframework-simplejwt,
#      python3-jwt, python3-venv, python3-pip, python3-setuptools, chromium.
#      Set CANAL_SKIP_INSTALL=1 to skip this step.
#   2. go vet ./...
#   3. The Django companion package's tests on Debian's Django 3.2 (/usr/bin/python3),
#      then on Django 4.2 (trixie) and 5.2 (sid), fetched by scripts/debian-django.sh into
#      ~/.cache/canal/debian (CANAL_DEBIAN_CACHE) without touching the system's apt
#      configuration.
#      Set CANAL_DJANGO_VERSIONS=bookworm to test only the system Django.
#   4. pip-installs python/ into a throwaway virtualenv and imports it.
#   5. go test -race ./... : every Go test, against private redis-server processes, real
#      Django processes and headless Chromium that the tests start and stop themselves
#      on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=(redis-server python3-django python3-django-channels python3-channels-redis
  python3-daphne python3-redis python3-msgpack python3-cryptography python3-djangorestframework
  python3-djangorestframework-simplejwt python3-jwt python3-venv python3-pip
  python3-setuptools chromium)

install_deps() {
  local missing=()
  for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { echo "test: Debian packages present"; return; }
  echo "test: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

[ "${CANAL_SKIP_INSTALL:-0}" = 1 ] || install_deps

# Keep the fetched Debian suites outside the clone, so CI's fresh clones reuse them.
export CANAL_DEBIAN_CACHE=${CANAL_DEBIAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canal/debian}

echo "test: go vet ./..."
go vet ./...

for suite in ${CANAL_DJANGO_VERSIONS:-bookworm trixie sid}; do
  if [ "$suite" = bookworm ]; then
    echo "test: django_canal on the system Django"
    /usr/bin/python3 python/runtests.py
  else
    pp=$(scripts/debian-django.sh "$suite" | tail -n1)
    echo "test: django_canal on $suite's Django"
    PYTHONPATH="$pp" /usr/bin/python3 python/runtests.py
  fi
done

echo "test: pip install ./python into a throwaway virtualenv"
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$venv"
# No index is reachable for build tools, so build with Debian's setuptools.
"$venv/bin/pip" install -q --no-build-isolation --no-index ./python
(cd "$venv" && "$venv/bin/python" -c "import django_canal, realtime_ticket; print('test: django-canal installs and imports')")

# The layer's interop tests run against every Django stack fetched above; make a
# missing one an error rather than a quiet reduction of the test matrix.
case " ${CANAL_DJANGO_VERSIONS:-bookworm trixie sid} " in
*" trixie "*" sid "*) export CANAL_REQUIRE_DEBIAN_SUITES=1 ;;
esac

echo "test: go test -race ./..."
go test -race -count=1 -timeout 30m ./...
