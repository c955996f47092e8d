#!/usr/bin/env bash
# Fetch newer Django (and the Channels stack, for later use) from a Debian
# suite and unpack it into a private tree, so the Django half of Canal can be
# tested against several Django versions with the system python3.
#
#   scripts/debian-django.sh trixie   # Django 4.2
#   scripts/debian-django.sh sid      # Django 5.2
#
# The last line printed is the PYTHONPATH to use, e.g.
#   PYTHONPATH=$(scripts/debian-django.sh trixie | tail -n1) /usr/bin/python3 python/runtests.py
#
# The system apt configuration is never changed: apt runs with its own
# sources.list, lists, cache, empty dpkg status and no preferences, all under
# the cache dir. Re-running is cheap: an unpacked suite is reused as it is
# (pass --refresh as second argument to fetch again).
set -euo pipefail

suite=${1:-}
case "$suite" in
  trixie|sid|forky|unstable|testing) ;;
  *) echo "usage: $0 trixie|sid [--refresh]" >&2; exit 2 ;;
esac
refresh=${2:-}

repo=$(cd "$(dirname "$0")/.." && pwd)
base=${CANAL_DEBIAN_CACHE:-$repo/.cache/debian}/$suite
root=$base/root
pythonpath=$root/usr/lib/python3/dist-packages
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Pure-Python packages (python3-msgpack also falls back to pure Python when
# its C extension was built for another interpreter).
packages=(
  python3-django
  python3-asgiref
  python3-redis
  python3-django-channels
  python3-channels-redis
  python3-daphne
  python3-msgpack
)

stamp=$base/.unpacked
if [[ -f $stamp && $refresh != --refresh && "$(cat "$stamp")" == "${packages[*]}" ]]; then
  echo "debian-django: $suite already unpacked in $root" >&2
  echo "$pythonpath"
  exit 0
fi

if [[ ! -r $keyring ]]; then
  echo "debian-django: $keyring missing (apt-get install debian-archive-keyring)" >&2
  exit 1
fi

mkdir -p "$base"/{etc/sources.list.d,etc/preferences.d,etc/trusted.gpg.d,lists/partial,cache/archives/partial,state,debs}
: >"$base/state/status"  # empty dpkg status: candidates come from $suite only

cat >"$base/etc/sources.list" <<SRC
deb [signed-by=$keyring] $mirror $suite main
SRC

# Read after the system's apt.conf.d, so it can also drop the system's
# update hooks (cache cleaning, appstream refresh) which must not run here.
cat >"$base/etc/apt.conf" <<CONF
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
Dir::Etc::SourceList "$base/etc/sources.list";
Dir::Etc::SourceParts "$base/etc/sources.list.d";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$base/etc/preferences.d";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "$base/etc/trusted.gpg.d";
Dir::State "$base/state";
Dir::State::Lists "$base/lists";
Dir::State::status "$base/state/status";
Dir::Cache "$base/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
APT::Sandbox::User "root";
CONF
export APT_CONFIG=$base/etc/apt.conf

echo "debian-django: apt-get update ($suite)" >&2
apt-get -q update >&2

echo "debian-django: downloading ${packages[*]}" >&2
rm -f "$base"/debs/*.deb
(cd "$base/debs" && apt-get -q download "${packages[@]}" >&2)

rm -rf "$root"
mkdir -p "$root"
for deb in "$base"/debs/*.deb; do
  dpkg-deb -x "$deb" "$root"
  echo "debian-django:   $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >&2
done
echo "${packages[*]}" >"$stamp"
echo "$pythonpath"
