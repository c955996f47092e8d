#!/usr/bin/env bash
# bench/run.sh: Canal against Django Channels (Daphne, channels_redis core and Pub/Sub)
# and a bare Go server, on this machine, in one command. See bench/README.md.
#
#   bench/run.sh                 the full benchmark: 3 runs, writes BENCHMARKS.md
#   bench/run.sh --smoke         tiny sizes, 1 run, about a minute: tests the harness
#   bench/run.sh --stress        the stress mode: W2 at 1,000 / 5,000 / 19,000 members,
#                                quiet, with a busy loop on the server's core, and with
#                                10 % of the clients not reading; Canal and the baseline;
#                                writes the "Stress" section of BENCHMARKS.md
#   bench/run.sh --smoke --stress   the same, tiny and fast: tests the stress harness
#   bench/run.sh --w5            W5 scale-out: 1, 2, 3 Canal processes on one Redis and on a
#                                3-master Redis Cluster, core and Pub/Sub layers; writes the
#                                "W5" section of BENCHMARKS.md (bench/README.md "W5")
#   bench/run.sh --smoke --w5    the same, tiny and fast: tests the W5 harness
#
# Options:
#   --smoke                  small N, short phases, one run; never writes BENCHMARKS.md
#   --runs N                 runs (default 3; smoke 1); the report shows medians
#   --servers a,b            subset of: canal,channels-core,channels-pubsub,baseline,canal-bin,floor
#                            (floor: W1 only, the least a Go server does per handshake,
#                            servers/floor; its other cells are n/a)
#                            (canal-bin: the canal binary, cmd/canal, configured by
#                            servers/canalbin/canal.toml; W1-W3 and soak, W4 is n/a: no echo)
#   --workloads a,b          subset of: w1,w2,w3,w4
#   --w2-sizes a,b           W2 subscriber counts (default 1000,5000; smoke 50)
#   --soak SECONDS           also hold the largest W3 size for SECONDS (600 = the 10-minute
#                            soak) on each of --soak-servers, sampling the server's RSS
#   --soak-servers a,b       default: canal (canal-bin too)
#   --out DIR                results directory (default bench/results/<UTC date>-<mode>)
#   --allow-pending-layer    run the full benchmark even without Canal's Redis layer
#                            (Canal's W2 rows then say "n/a (Redis layer pending)")
#   --no-benchmarks-md       do not rewrite BENCHMARKS.md after a full run
#   --no-install             do not apt-get install missing packages (also: CANAL_SKIP_INSTALL=1)
#   --without-redis-layer    build Canal without its Redis layer, as before layers.NewRedis
#                            existed (tests the harness's "n/a (Redis layer pending)" path)
#   --stress                 the stress mode instead of W1-W4 (servers default: canal,baseline;
#                            runs default: 1); see bench/README.md "Stress"
#   --stress-sizes a,b       its member counts (default 1000,5000,19000; smoke 50)
#   --stress-conditions a,b  subset of: quiet,busy,stalled (default all three)
#   --w5                     the W5 scale-out mode instead of W1-W4 (Canal only; runs default 1)
#   --w5-procs a,b           server processes per cell (default 1,2,3; smoke 1,2)
#   --w5-per-proc a,b        sockets per server process (default 6000,19000; smoke 25);
#                            two or more sizes let the report's model tell per-socket from
#                            per-process costs
#   --w5-topologies a,b      subset of: redis,pubsub,cluster,cluster-pubsub (default all;
#                            smoke redis,cluster)
#   --note TEXT              a line the W5 section prints under its title (e.g. the machine's state)
#
# Everything runs on 127.0.0.1: a private redis-server on a free port, each server in
# turn pinned to core 0 (Go servers with GOMAXPROCS=1), the load generator, Redis and
# the publisher pinned to core 1. Every process started here is stopped on exit; every
# step is bounded in time (timeout) and every loop in count.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
PY=/usr/bin/python3 # Debian's: Django 3.2, channels 4.0, channels_redis 4.0, daphne 4.0
COMMAND="bench/run.sh${*:+ $*}"

mode=full
runs=""
out=""
servers="canal channels-core channels-pubsub baseline"
workloads="w1 w2 w3 w4"
soak=0
w2_sizes=""
soak_servers="canal"
allow_pending=0
write_md=1
install=1
no_layer=0
stress=0
stress_sizes=""
stress_conditions="quiet busy stalled"
servers_given=0
w5=0
w5_procs=""
w5_per_proc=""
w5_topologies=""
note=""
[ "${CANAL_SKIP_INSTALL:-0}" = 1 ] && install=0

die() {
  echo "bench: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
  --smoke) mode=smoke ;;
  --runs) runs=${2:?--runs needs a number}; shift ;;
  --servers) servers=${2//,/ }; servers_given=1; shift ;;
  --workloads) workloads=${2//,/ }; shift ;;
  --w2-sizes) w2_sizes=${2//,/ }; shift ;;
  --soak) soak=${2:?--soak needs seconds}; shift ;;
  --soak-servers) soak_servers=${2//,/ }; shift ;;
  --out) out=${2:?--out needs a directory}; shift ;;
  --allow-pending-layer) allow_pending=1 ;;
  --no-benchmarks-md) write_md=0 ;;
  --no-install) install=0 ;;
  --without-redis-layer) no_layer=1 ;;
  --stress) stress=1 ;;
  --stress-sizes) stress_sizes=${2//,/ }; shift ;;
  --stress-conditions) stress_conditions=${2//,/ }; shift ;;
  --w5) w5=1 ;;
  --w5-procs) w5_procs=${2//,/ }; shift ;;
  --w5-per-proc) w5_per_proc=${2//,/ }; shift ;;
  --w5-topologies) w5_topologies=${2//,/ }; shift ;;
  --note) note=${2:?--note needs a text}; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
for s in $servers $soak_servers; do
  case $s in canal | canal-bin | channels-core | channels-pubsub | baseline | floor) ;; *) die "unknown server $s" ;; esac
done
for w in $workloads; do
  case $w in w1 | w2 | w3 | w4) ;; *) die "unknown workload $w" ;; esac
done
[[ "$soak" =~ ^[0-9]+$ ]] || die "--soak wants whole seconds"
for c in $stress_conditions; do
  case $c in quiet | busy | stalled) ;; *) die "unknown stress condition $c (quiet, busy, stalled)" ;; esac
done
if [ "$stress" = 1 ]; then
  # Channels is optional in the stress mode: it has no goroutines or close counts to show.
  [ "$servers_given" = 1 ] || servers="canal baseline"
  [ "$soak" = 0 ] || die "--soak and --stress are separate runs"
  # The stress mode's non-readers join a second group by user name, which a route's
  # group templates cannot choose; canal-bin measures W1-W3 against servers/canal.
  [[ " $servers " != *" canal-bin "* ]] || die "canal-bin has no stress mode (W1-W3 and soak only)"
  [[ " $servers " != *" floor "* ]] || die "floor has no stress mode (W1 only)"
fi

if [ "$w5" = 1 ]; then
  [ "$stress" = 0 ] || die "--w5 and --stress are separate runs"
  [ "$soak" = 0 ] || die "--soak and --w5 are separate runs"
  servers="canal"
fi

# Parameters. Full: what bench/README.md states. Smoke: the same code paths, tiny.
if [ "$mode" = full ]; then
  { [ "$stress" = 1 ] || [ "$w5" = 1 ]; } && : "${runs:=1}"
  : "${runs:=3}"
  W1_DUR=10s W1_CONC=64 W1_MAX=300000
  W2_SIZES="1000 5000" BURST=100 PACED_RATE=2 PACED_DUR=10s DRAIN_IDLE=10s
  W3_SIZES="5000 19000" SETTLE=5s HOLD=30s SAMPLE=30s
  W4_SOCKETS=200 W4_DUR=10s WARMUP=1s
  PING=10 PER_WORKER=5000 CONNECT_CONC=64
  HOLD_DEADLINE=900 SERVER_START=60
  STRESS_SIZES="1000 5000 19000" STRESS_SETTLE=2s
  W5_PROCS="1 2 3" W5_PER_PROC="6000 19000" W5_TOPOLOGIES="redis pubsub cluster cluster-pubsub"
else
  : "${runs:=1}"
  W1_DUR=1s W1_CONC=8 W1_MAX=20000
  W2_SIZES="50" BURST=10 PACED_RATE=2 PACED_DUR=1.5s DRAIN_IDLE=3s
  W3_SIZES="100" SETTLE=0.3s HOLD=2.5s SAMPLE=1s
  W4_SOCKETS=20 W4_DUR=1s WARMUP=0.3s
  PING=1 PER_WORKER=40 CONNECT_CONC=16
  HOLD_DEADLINE=90 SERVER_START=30
  STRESS_SIZES="50" STRESS_SETTLE=0.3s
  W5_PROCS="1 2" W5_PER_PROC="25" W5_TOPOLOGIES="redis cluster"
fi
[ -n "$w5_procs" ] && W5_PROCS=$w5_procs
[ -n "$w5_per_proc" ] && W5_PER_PROC=$w5_per_proc
[ -n "$w5_topologies" ] && W5_TOPOLOGIES=$w5_topologies
for n in $W5_PROCS; do [[ "$n" =~ ^[1-9]$ ]] || die "--w5-procs wants counts 1 … 9"; done
for n in $W5_PER_PROC; do [[ "$n" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$n" -le 19000 ] || die "--w5-per-proc wants counts 1 … 19000 (each server stays under the 20,000-file limit)"; done
for t in $W5_TOPOLOGIES; do
  case $t in redis | pubsub | cluster | cluster-pubsub) ;; *) die "unknown W5 topology $t (redis, pubsub, cluster, cluster-pubsub)" ;; esac
done
# Stress: 10 % of the members stop reading; during the burst they are sent 640 messages
# of 32 KiB (20 MiB each): more than loopback's socket buffers (about 3 MiB per socket
# here) and a bounded server's own can hold, so the server must end them.
STALL_PCT=10 STALL_MSGS=640 STALL_BYTES=32768
[[ "$runs" =~ ^[1-9][0-9]?$ ]] || die "--runs wants 1 … 99"
if [ -n "$stress_sizes" ]; then
  for n in $stress_sizes; do [[ "$n" =~ ^[1-9][0-9]{0,4}$ ]] || die "--stress-sizes wants counts 1 … 99999"; done
  STRESS_SIZES=$stress_sizes
fi
if [ "$stress" = 1 ] || [ "$w5" = 1 ]; then
  W2_SIZES="" W3_SIZES=""
fi
if [ -n "$w2_sizes" ]; then
  for n in $w2_sizes; do [[ "$n" =~ ^[1-9][0-9]{0,4}$ ]] || die "--w2-sizes wants counts 1 … 99999"; done
  W2_SIZES=$w2_sizes
fi

# --- Dependencies -----------------------------------------------------------------
pkgs=(redis-server python3-django python3-django-channels python3-channels-redis
  python3-daphne python3-redis python3-msgpack util-linux)
# W5's Redis Cluster is created with redis-cli.
[ "$w5" = 1 ] && [[ " $W5_TOPOLOGIES " == *" cluster"* ]] && pkgs+=(redis-tools)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$install" = 1 ] || die "missing Debian packages: ${missing[*]} (run without --no-install, or apt-get install them)"
  echo "bench: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
    sudo=sudo
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v go >/dev/null || die "go not found on PATH"
command -v redis-server >/dev/null || die "redis-server not found"
$PY -c 'import django, channels, channels_redis, daphne, redis, msgpack' ||
  die "$PY cannot import the Channels stack (Debian packages above)"

# --- Limits and pinning -------------------------------------------------------------
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" || true
biggest=0 biggest_w3=0
for n in $W3_SIZES $W2_SIZES; do [ "$n" -gt "$biggest" ] && biggest=$n; done
if [ "$stress" = 1 ]; then
  for n in $STRESS_SIZES; do [ "$n" -gt "$biggest" ] && biggest=$n; done
fi
for n in $W3_SIZES; do [ "$n" -gt "$biggest_w3" ] && biggest_w3=$n; done
if [ "$w5" = 1 ]; then
  for n in $W5_PER_PROC; do [ "$n" -gt "$biggest" ] && biggest=$n; done
fi
# The server holds every socket in one process (W5: each server its share); the load
# generator splits them over workers.
if [ "$(ulimit -n)" -lt $((biggest + 500)) ]; then
  die "open-file limit $(ulimit -n) is below the $((biggest + 500)) the server needs for $biggest sockets (raise ulimit -Hn)"
fi
PIN0="" PIN1="" pinned=yes
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN0="taskset -c 0" PIN1="taskset -c 1"
else
  pinned=no
  echo "bench: WARNING: fewer than 2 cores or no taskset: processes are not pinned" >&2
fi

# --- Output and processes -------------------------------------------------------------
stamp=$(date -u +%Y%m%dT%H%M%SZ)
: "${out:=$BENCH/results/$stamp-$mode$([ "$stress" = 1 ] && echo -stress)$([ "$w5" = 1 ] && echo -w5)}"
mkdir -p "$out/cells" "$out/logs" "$out/bin"
out=$(cd "$out" && pwd)
BIN=$out/bin

PIDS=()
cleanup() {
  local p i alive
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() { # forget PID: drop it from the cleanup list
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# --- Build ---------------------------------------------------------------------------
# Canal's Redis channel layer is built in as soon as layers/ defines NewRedis; until
# then Canal runs on the memory layer and its W2 cells say so (servers/canal/layer_*.go).
tags=""
if [ "$no_layer" = 0 ] && grep -qs '^func NewRedis' "$ROOT"/layers/*.go; then tags="canal_redis_layer"; fi
echo "bench: building into $BIN${tags:+ (tags: $tags)}"
if ! (cd "$ROOT" && go build ${tags:+-tags "$tags"} -o "$BIN/" ./bench/cmd/loadgen ./bench/cmd/report ./bench/servers/canal ./bench/servers/baseline ./bench/servers/floor); then
  if [ -n "$tags" ]; then
    die "layers.NewRedis exists but bench/servers/canal/layer_redis.go does not build against it: adapt that file's one call"
  fi
  die "build failed"
fi
# canal-bin: the ready server, cmd/canal, built from the working tree as it is, and
# its configuration (servers/canalbin/canal.toml; addresses from CANAL_LISTEN and
# CANAL_REDIS_URL at start). The benchmark's ping interval goes in as
# [server] ping_interval when the binary has that setting (canal check accepts it);
# otherwise the binary pings on its fixed default, and meta.json says which.
CANAL_BIN_TOML=$out/canal-bin.toml
CANAL_BIN_PING=""
if [[ " $servers $soak_servers " == *" canal-bin "* ]]; then
  (cd "$ROOT" && go build -o "$BIN/canal-bin" ./cmd/canal) || die "building ./cmd/canal (canal-bin) failed"
  cp "$BENCH/servers/canalbin/canal.toml" "$CANAL_BIN_TOML"
  printf '\n[server]\nping_interval = "%ss"\n' "$PING" >>"$CANAL_BIN_TOML"
  if CANAL_REDIS_URL=redis://127.0.0.1:1/0 "$BIN/canal-bin" check -config "$CANAL_BIN_TOML" >/dev/null 2>&1; then
    CANAL_BIN_PING="${PING}s"
  else
    cp "$BENCH/servers/canalbin/canal.toml" "$CANAL_BIN_TOML"
    CANAL_BIN_PING="25s (the binary's fixed default: cmd/canal has no ping setting)"
    echo "bench: WARNING: canal-bin pings every 25 s, not every ${PING} s: cmd/canal has no [server] ping_interval" >&2
  fi
  CANAL_REDIS_URL=redis://127.0.0.1:1/0 "$BIN/canal-bin" check -config "$CANAL_BIN_TOML" >&2 ||
    die "canal check refuses $CANAL_BIN_TOML (from bench/servers/canalbin/canal.toml)"
fi
canal_layer=$("$BIN/canal" -layer-status)
if [ "$canal_layer" != redis ] && [ "$w5" = 1 ]; then
  die "W5 needs Canal's Redis layer (layers.NewRedis): this build has none"
fi
if [ "$canal_layer" != redis ]; then
  echo "bench: WARNING: Canal's Redis channel layer is pending: Canal runs W1/W3/W4 on the memory layer and its W2 rows say \"n/a (Redis layer pending)\"" >&2
  if [ "$mode" = full ] && [ "$allow_pending" = 0 ] && [[ " $servers " == *" canal "* ]]; then
    die "the full benchmark needs Canal's Redis layer (layers.NewRedis); pass --allow-pending-layer to run it anyway"
  fi
fi

# --- Redis ---------------------------------------------------------------------------
rport=$("$BIN/loadgen" freeport)
RURL="redis://127.0.0.1:$rport/0"
mkdir -p "$out/redis"
$PIN1 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$out/redis" --maxclients 10000 >"$out/logs/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
"$BIN/loadgen" redis -redis "$RURL" -timeout 10s ping || die "redis-server did not start (see $out/logs/redis.log)"

# W5's Redis Cluster: 3 masters, no replicas, as canaltest.StartRedisCluster builds it
# (cluster bus on its own free port, full coverage not required), pinned with Redis.
CLUSTER_ADDRS=() CLUSTER_PIDS=()
if [ "$w5" = 1 ] && [[ " $W5_TOPOLOGIES " == *" cluster"* ]]; then
  command -v redis-cli >/dev/null || die "redis-cli not found (Debian: redis-tools): W5's cluster needs it"
  for i in 1 2 3; do
    cport=$("$BIN/loadgen" freeport)
    bport=$("$BIN/loadgen" freeport)
    mkdir -p "$out/redis/cluster$i"
    $PIN1 redis-server --port "$cport" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$out/redis/cluster$i" --maxclients 10000 --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-port "$bport" --cluster-node-timeout 3000 \
      --cluster-require-full-coverage no >"$out/logs/redis-cluster$i.log" 2>&1 &
    PIDS+=($!)
    CLUSTER_PIDS+=($!)
    CLUSTER_ADDRS+=("127.0.0.1:$cport")
    "$BIN/loadgen" redis -redis "redis://127.0.0.1:$cport" -timeout 10s ping ||
      die "cluster node $i did not start (see $out/logs/redis-cluster$i.log)"
  done
  timeout 30 redis-cli --cluster create "${CLUSTER_ADDRS[@]}" --cluster-replicas 0 --cluster-yes \
    >"$out/logs/redis-cluster-create.log" 2>&1 || die "redis-cli --cluster create failed (see $out/logs/redis-cluster-create.log)"
  "$BIN/loadgen" redis -redis "redis://${CLUSTER_ADDRS[0]}" -timeout 20s \
    -nodes "$(IFS=,; echo "${CLUSTER_ADDRS[*]}")" cluster-ready || die "the Redis Cluster did not become ready"
fi

# --- Metadata ------------------------------------------------------------------------
META_W5=$w5 META_W5_PROCS=$W5_PROCS META_W5_PER_PROC=$W5_PER_PROC META_W5_TOPOLOGIES=$W5_TOPOLOGIES META_NOTE=$note \
  META_W5_PARAMS="burst ${BURST}, then paced ${PACED_RATE}/s for ${PACED_DUR}, on the same sockets, settle ${STRESS_SETTLE}; server pings every ${PING}s; every Canal server GOMAXPROCS=1 on core 0, redis-server(s), the load generator and the publisher on core 1" \
  META_STRESS=$stress META_STRESS_SIZES=$STRESS_SIZES META_STRESS_CONDITIONS=$stress_conditions \
  META_STRESS_PARAMS="W2 burst ${BURST}, then paced ${PACED_RATE}/s for ${PACED_DUR}, on the same sockets, settle ${STRESS_SETTLE}; busy: a CPU busy loop pinned to core 0 at normal priority during both phases; stalled: ${STALL_PCT} % of the members never read after the greeting and are sent ${STALL_MSGS} messages of ${STALL_BYTES} bytes during the burst; server pings every ${PING}s" \
  META_CANAL_BIN_PING=$CANAL_BIN_PING META_MODE=$mode META_RUNS=$runs META_COMMAND=$COMMAND META_PINNED=$pinned \
  META_LAYER=$canal_layer META_SERVERS=$servers META_WORKLOADS=$workloads \
  META_W2=$W2_SIZES META_W3=$W3_SIZES META_SOAK=$soak META_SOAK_SERVERS=$soak_servers \
  META_PARAMS="W1 ${W1_DUR} at concurrency ${W1_CONC}; W2 burst ${BURST}, paced ${PACED_RATE}/s for ${PACED_DUR}; W3 settle ${SETTLE}, hold ${HOLD}; W4 ${W4_SOCKETS} sockets for ${W4_DUR}; server pings every ${PING}s" \
  META_FDS=$(ulimit -n) META_ROOT=$ROOT META_GO="$(go version)" \
  META_REDIS="$(redis-server --version)" META_MODS="$(cd "$ROOT" && go list -m -f '{{.Path}} {{.Version}}' github.com/gofiber/fiber/v2 github.com/fasthttp/websocket github.com/redis/rueidis 2>/dev/null | tr '\n' ';')" \
  $PY - >"$out/meta.json" <<'EOF'
import datetime, json, os, platform, subprocess
import django, channels, channels_redis, daphne, redis, msgpack
e = os.environ
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, cwd=e["META_ROOT"]).stdout.strip()
    except OSError:
        return ""
cpu = ""
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
with open("/proc/meminfo") as f:
    mem_kib = int(f.readline().split()[1])
commit = sh("git", "rev-parse", "--short", "HEAD")
if commit and sh("git", "status", "--porcelain"):
    commit += " (with uncommitted changes)"
print(json.dumps({
    "mode": e["META_MODE"], "runs": int(e["META_RUNS"]), "command": e["META_COMMAND"],
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1048576, 1),
                "kernel": platform.release(), "os": sh("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME")},
    "versions": {"go": e["META_GO"], "go_modules": e["META_MODS"].strip(";").replace(";", ", "),
                 "python": platform.python_version(), "django": django.get_version(),
                 "channels": channels.__version__, "channels_redis": channels_redis.__version__,
                 "daphne": daphne.__version__, "redis_py": redis.__version__,
                 "msgpack": ".".join(map(str, msgpack.version)), "redis_server": e["META_REDIS"]},
    "commit": commit, "pinned": e["META_PINNED"] == "yes", "open_files": int(e["META_FDS"]),
    "canal_layer": e["META_LAYER"], "servers": e["META_SERVERS"].split(),
    "workloads": e["META_WORKLOADS"].split(),
    "w2_sizes": [int(x) for x in e["META_W2"].split()], "w3_sizes": [int(x) for x in e["META_W3"].split()],
    "soak_s": int(e["META_SOAK"]), "soak_servers": e["META_SOAK_SERVERS"].split(),
    "params": e["META_PARAMS"],
    "stress": e["META_STRESS"] == "1",
    "stress_sizes": [int(x) for x in e["META_STRESS_SIZES"].split()] if e["META_STRESS"] == "1" else [],
    "stress_conditions": e["META_STRESS_CONDITIONS"].split() if e["META_STRESS"] == "1" else [],
    "stress_params": e["META_STRESS_PARAMS"] if e["META_STRESS"] == "1" else "",
    "w5": e["META_W5"] == "1",
    "w5_procs": [int(x) for x in e["META_W5_PROCS"].split()] if e["META_W5"] == "1" else [],
    "w5_per_proc": [int(x) for x in e["META_W5_PER_PROC"].split()] if e["META_W5"] == "1" else [],
    "w5_topologies": e["META_W5_TOPOLOGIES"].split() if e["META_W5"] == "1" else [],
    "w5_params": e["META_W5_PARAMS"] if e["META_W5"] == "1" else "",
    "note": e["META_NOTE"],
    "canal_bin_ping": e["META_CANAL_BIN_PING"],
}, indent=2))
EOF

# --- Servers -------------------------------------------------------------------------
SERVER_PID=""
SERVER_PORT=""
DEBUG_URL=""
start_server() { # start_server NAME LOG
  local name=$1 log=$2 layer debug=()
  SERVER_PORT=$("$BIN/loadgen" freeport)
  DEBUG_URL=""
  if [ "$stress" = 1 ] && { [ "$name" = canal ] || [ "$name" = baseline ]; }; then
    local dport
    dport=$("$BIN/loadgen" freeport)
    debug=(-debug-addr "127.0.0.1:$dport")
    DEBUG_URL="http://127.0.0.1:$dport/debug/stats"
  fi
  case $name in
  canal)
    layer=memory
    [ "$canal_layer" = redis ] && layer=redis
    env GOMAXPROCS=1 $PIN0 "$BIN/canal" -addr "127.0.0.1:$SERVER_PORT" -redis "$RURL" \
      -ping "${PING}s" -layer "$layer" "${debug[@]}" >"$log" 2>&1 &
    ;;
  baseline)
    env GOMAXPROCS=1 $PIN0 "$BIN/baseline" -addr "127.0.0.1:$SERVER_PORT" -redis "$RURL" \
      -ping "${PING}s" "${debug[@]}" >"$log" 2>&1 &
    ;;
  floor)
    env GOMAXPROCS=1 $PIN0 "$BIN/floor" -addr "127.0.0.1:$SERVER_PORT" >"$log" 2>&1 &
    ;;
  canal-bin)
    env GOMAXPROCS=1 CANAL_LISTEN="127.0.0.1:$SERVER_PORT" CANAL_REDIS_URL="$RURL" \
      $PIN0 "$BIN/canal-bin" serve -config "$CANAL_BIN_TOML" >"$log" 2>&1 &
    ;;
  channels-core | channels-pubsub)
    env BENCH_REDIS_URL="$RURL" BENCH_LAYER="${name#channels-}" PYTHONPATH="$BENCH/peer" \
      $PIN0 $PY -m daphne -v 0 -b 127.0.0.1 -p "$SERVER_PORT" --ping-interval "$PING" \
      --ping-timeout 30 benchpeer.asgi:application >"$log" 2>&1 &
    ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  "$BIN/loadgen" waitport -addr "127.0.0.1:$SERVER_PORT" -pid "$SERVER_PID" -timeout "${SERVER_START}s"
}

stop_server() {
  local i
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  forget "$SERVER_PID"
}

layer_of() {
  case $1 in
  canal) [ "$canal_layer" = redis ] && echo redis-core || echo memory ;;
  canal-bin) echo redis-core ;;
  floor) echo none ;;
  channels-core) echo redis-core ;;
  channels-pubsub) echo redis-pubsub ;;
  baseline) echo pubsub ;;
  esac
}

write_stub() { # write_stub FILE RUN SERVER WORKLOAD PARAM FIELD TEXT [CONDITION]
  printf '{"run": %d, "server": "%s", "workload": "%s", "param": %d, "layer": "%s", %s"%s": "%s"}\n' \
    "$2" "$3" "$4" "$5" "$(layer_of "$3")" "${8:+\"condition\": \"$8\", }" "$6" "$7" >"$1"
}

# run_cell RUN SERVER WORKLOAD PARAM [CONDITION]: fresh Redis state, fresh server, one
# measurement.
run_cell() {
  local run=$1 server=$2 wl=$3 param=$4 cond=${5:-} name file log cap args=()
  name="r$run-$wl${param:+-$param}${cond:+-$cond}-$server"
  file="$out/cells/$name.json"
  log="$out/logs/$name.log"
  if { [ "$wl" = w2 ] || [ "$wl" = stress ]; } && [ "$server" = canal ] && [ "$canal_layer" != redis ]; then
    write_stub "$file" "$run" "$server" "$wl" "$param" na "n/a (Redis layer pending)" "$cond"
    echo "bench: $name: n/a (Redis layer pending)"
    return
  fi
  if [ "$wl" != w1 ] && [ "$server" = floor ]; then
    write_stub "$file" "$run" "$server" "$wl" "${param:-0}" na "— (W1 only)" "$cond" # result.W1Only
    echo "bench: $name: n/a (floor runs W1 only)"
    return
  fi
  if [ "$wl" = w4 ] && [ "$server" = canal-bin ]; then
    # The binary's routes relay client messages to groups, workers or Django, never
    # straight back: W4 measures nothing it does (the report shows it as n/a).
    write_stub "$file" "$run" "$server" "$wl" 0 na "— (no echo)" # result.NoEcho
    echo "bench: $name: n/a (the binary has no echo)"
    return
  fi
  "$BIN/loadgen" redis -redis "$RURL" flushall
  if ! start_server "$server" "$log"; then
    write_stub "$file" "$run" "$server" "$wl" "${param:-0}" error "server did not start (see logs/$name.log)" "$cond"
    stop_server
    return
  fi
  args=(-url "ws://127.0.0.1:$SERVER_PORT/ws/bench/" -redis "$RURL" -server-pid "$SERVER_PID"
    -redis-pid "$REDIS_PID" -run "$run" -server "$server" -layer "$(layer_of "$server")" -out "$file"
    -connect-concurrency "$CONNECT_CONC")
  [ "$server" = canal-bin ] && args+=(-contract binary)
  case $wl in
  w1)
    cap=$((${W1_DUR%s} + 120))
    args+=(-duration "$W1_DUR" -concurrency "$W1_CONC" -max-handshakes "$W1_MAX" -warmup "$WARMUP")
    ;;
  w2)
    cap=$HOLD_DEADLINE
    local backend=core
    case $server in channels-pubsub) backend=pubsub ;; baseline) backend=publish ;; esac # canal-bin: core
    args+=(-sockets "$param" -per-worker "$PER_WORKER" -burst "$BURST" -paced-rate "$PACED_RATE"
      -paced-duration "$PACED_DUR" -drain-idle "$DRAIN_IDLE" -python "$PY"
      -publisher "$BENCH/peer/publish.py" -publisher-backend "$backend")
    ;;
  stress)
    cap=$HOLD_DEADLINE
    local backend=core
    case $server in channels-pubsub) backend=pubsub ;; baseline) backend=publish ;; esac
    args+=(-sockets "$param" -per-worker "$PER_WORKER" -burst "$BURST" -paced-rate "$PACED_RATE"
      -paced-duration "$PACED_DUR" -drain-idle "$DRAIN_IDLE" -python "$PY"
      -publisher "$BENCH/peer/publish.py" -publisher-backend "$backend" -settle "$STRESS_SETTLE"
      -condition "$cond" -stall-pct "$STALL_PCT" -stall-messages "$STALL_MSGS"
      -stall-text-bytes "$STALL_BYTES" -debug-url "$DEBUG_URL" -busy-cpu "${PIN0:+0}")
    ;;
  w3)
    cap=$HOLD_DEADLINE
    args+=(-sockets "$param" -per-worker "$PER_WORKER" -settle "$SETTLE" -hold "$HOLD")
    ;;
  soak)
    cap=$((soak + HOLD_DEADLINE))
    args+=(-sockets "$param" -per-worker "$PER_WORKER" -settle "$SETTLE" -hold "${soak}s" -sample "$SAMPLE")
    ;;
  w4)
    cap=$((${W4_DUR%s} + 120))
    args+=(-sockets "$W4_SOCKETS" -duration "$W4_DUR" -warmup "$WARMUP")
    ;;
  esac
  args+=(-deadline "${cap}s")
  local rc=0
  $PIN1 timeout -k 10 $((cap + 30)) "$BIN/loadgen" "$wl" "${args[@]}" 2>>"$out/logs/$name.loadgen.log" || rc=$?
  stop_server
  if [ ! -s "$file" ]; then
    write_stub "$file" "$run" "$server" "$wl" "${param:-0}" error "load generator exited with status $rc (see logs/$name.loadgen.log)" "$cond"
  fi
  echo "bench: $name done$([ "$rc" = 0 ] || echo " (status $rc)")"
}

# --- W5 -----------------------------------------------------------------------------------
# run_w5_cell RUN TOPOLOGY PROCS PER_PROC: fresh Redis state, PROCS fresh Canal servers
# (each GOMAXPROCS=1, all pinned to core 0), PROCS × PER_PROC sockets split evenly.
run_w5_cell() {
  local run=$1 topo=$2 procs=$3 per=$4 name file log i layer=redis backend=core
  local urls=() spids=() raddrs=() rpids=() seeds="" cluster_args=() a rc=0 cap=$HOLD_DEADLINE
  name="r$run-w5-$topo-${procs}x$per"
  file="$out/cells/$name.json"
  log="$out/logs/$name"
  case $topo in pubsub | cluster-pubsub) layer=pubsub backend=pubsub ;; esac
  "$BIN/loadgen" redis -redis "$RURL" flushall
  if [[ "$topo" == cluster* ]]; then
    seeds=$(IFS=,; echo "${CLUSTER_ADDRS[*]}")
    cluster_args=(-layer-cluster "$seeds")
    for a in "${CLUSTER_ADDRS[@]}"; do "$BIN/loadgen" redis -redis "redis://$a" flushall; done
    raddrs=("${CLUSTER_ADDRS[@]}") rpids=("${CLUSTER_PIDS[@]}")
    backend=go-$backend # channels_redis cannot use a cluster: Canal's layer publishes
  else
    raddrs=("127.0.0.1:$rport") rpids=("$REDIS_PID")
  fi
  for i in $(seq "$procs"); do
    SERVER_PORT=$("$BIN/loadgen" freeport)
    env GOMAXPROCS=1 $PIN0 "$BIN/canal" -addr "127.0.0.1:$SERVER_PORT" -redis "$RURL" \
      -ping "${PING}s" -layer "$layer" "${cluster_args[@]}" >"$log.server$i.log" 2>&1 &
    PIDS+=($!)
    spids+=($!)
    urls+=("ws://127.0.0.1:$SERVER_PORT/ws/bench/")
    if ! "$BIN/loadgen" waitport -addr "127.0.0.1:$SERVER_PORT" -pid "$!" -timeout "${SERVER_START}s"; then
      printf '{"run": %d, "server": "canal", "workload": "w5", "param": %d, "topology": "%s", "procs": %d, "error": "server %d did not start (see logs/%s.server%d.log)"}\n' \
        "$run" $((procs * per)) "$topo" "$procs" "$i" "$name" "$i" >"$file"
      for a in "${spids[@]}"; do SERVER_PID=$a stop_server; done
      echo "bench: $name: a server did not start"
      return
    fi
  done
  $PIN1 timeout -k 10 $((cap + 30)) "$BIN/loadgen" w5 -redis "$RURL" -run "$run" -server canal \
    -layer "redis-$backend" -topology "$topo" -out "$file" -connect-concurrency "$CONNECT_CONC" \
    -urls "$(IFS=,; echo "${urls[*]}")" -server-pids "$(IFS=,; echo "${spids[*]}")" \
    -redis-pids "$(IFS=,; echo "${rpids[*]}")" -redis-addrs "$(IFS=,; echo "${raddrs[*]}")" \
    ${seeds:+-layer-cluster "$seeds"} -sockets $((procs * per)) -per-worker "$PER_WORKER" \
    -burst "$BURST" -paced-rate "$PACED_RATE" -paced-duration "$PACED_DUR" -drain-idle "$DRAIN_IDLE" \
    -settle "$STRESS_SETTLE" -python "$PY" -publisher "$BENCH/peer/publish.py" -publisher-backend "$backend" \
    -deadline "${cap}s" 2>>"$log.loadgen.log" || rc=$?
  for a in "${spids[@]}"; do SERVER_PID=$a stop_server; done
  if [ ! -s "$file" ]; then
    printf '{"run": %d, "server": "canal", "workload": "w5", "param": %d, "topology": "%s", "procs": %d, "error": "load generator exited with status %d (see logs/%s.loadgen.log)"}\n' \
      "$run" $((procs * per)) "$topo" "$procs" "$rc" "$name" >"$file"
  fi
  echo "bench: $name done$([ "$rc" = 0 ] || echo " (status $rc)")"
}

# --- Runs ------------------------------------------------------------------------------
read -r -a order <<<"$servers"
cells=()
if [ "$stress" = 1 ]; then
  for n in $STRESS_SIZES; do
    for c in $stress_conditions; do cells+=("stress $n $c"); done
  done
else
  for w in $workloads; do
    case $w in
    w2) for n in $W2_SIZES; do cells+=("w2 $n"); done ;;
    w3) for n in $W3_SIZES; do cells+=("w3 $n"); done ;;
    *) cells+=("$w") ;;
    esac
  done
fi
cells_start=$SECONDS
if [ "$w5" = 1 ]; then
  cells=() runs_w5=$runs runs=0
  for run in $(seq "$runs_w5"); do
    for t in $W5_TOPOLOGIES; do
      for per in $W5_PER_PROC; do
        for n in $W5_PROCS; do run_w5_cell "$run" "$t" "$n" "$per"; done
      done
    done
  done
fi
for run in $(seq "$runs"); do
  # Servers alternate within each cell; the starting server rotates from run to run.
  k=$(((run - 1) % ${#order[@]}))
  rotated=("${order[@]:k}" "${order[@]:0:k}")
  for c in "${cells[@]}"; do
    read -r wl param cond <<<"$c"
    for s in "${rotated[@]}"; do run_cell "$run" "$s" "$wl" "${param:-}" "${cond:-}"; done
  done
done
if [ "$soak" -gt 0 ]; then
  for s in $soak_servers; do run_cell 1 "$s" soak "$biggest_w3"; done
fi
echo "bench: cells took $((SECONDS - cells_start)) s"

# --- Report ----------------------------------------------------------------------------
report_args=(-dir "$out")
if [ "$mode" = full ] && [ "$write_md" = 1 ]; then
  report_args+=(-benchmarks-md "$ROOT/BENCHMARKS.md")
fi
"$BIN/report" "${report_args[@]}"
echo "bench: results in $out"
