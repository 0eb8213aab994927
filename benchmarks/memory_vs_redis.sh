#!/usr/bin/env bash
# memory_vs_redis.sh -- resident memory of Trellis and of Redis holding the
# same data: KEYS keys "key:%012d" with VALUE_SIZE-byte values (LWW registers
# in Trellis, strings in Redis), written with SET over the Redis protocol by
# `trellis bench memory`, RSS (VmRSS) read after SETTLE.
#
# Usage:  benchmarks/memory_vs_redis.sh        (from the project root)
#
# What it does
#   1. builds trellis into $OUT;
#   2. starts `trellis up` on free loopback ports (port 0; the banner says
#      which), fills it, reads its RSS, stops it;
#   3. starts `redis-server --save '' --appendonly no` on a free port (Redis
#      is installed from Debian's packages if missing), the same;
#   4. prints both figures and, as its LAST line,
#        RSS trellis=<MiB> redis=<MiB> ratio=<trellis/redis>
# Each server is fresh and alone while it is measured. Both are pinned the
# same way (SERVER_CPU, default 0: a Go server then runs with GOMAXPROCS=1,
# as it does under redis_vs.sh's PIN=same); the filler runs on CLIENT_CPU.
# Both processes are stopped on exit, whatever happens.
#
# Env: KEYS=1000000 VALUE_SIZE=100 SETTLE=2s SERVER_CPU=0 CLIENT_CPU=1
#      (SERVER_CPU= CLIENT_CPU= for no pinning) OUT=<dir for binary and logs>
# Exit: 0 ok; 1 a measurement failed; 4 a server could not start.
set -euo pipefail

die() { echo "memory_vs_redis: $1" >&2; exit "${2:-1}"; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${KEYS:-1000000}; VALUE_SIZE=${VALUE_SIZE:-100}; SETTLE=${SETTLE:-2s}
SERVER_CPU=${SERVER_CPU-0}; CLIENT_CPU=${CLIENT_CPU-1}
OUT=${OUT:-$(mktemp -d /tmp/memory_vs_redis.XXXXXX)}
mkdir -p "$OUT"
SP=(); CP=()
[[ -n "$SERVER_CPU" ]] && SP=(taskset -c "$SERVER_CPU")
[[ -n "$CLIENT_CPU" ]] && CP=(taskset -c "$CLIENT_CPU")

TRELLIS_PID=""; REDIS_PID=""
stop_pid() {
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
cleanup() { stop_pid "$TRELLIS_PID"; TRELLIS_PID=""; stop_pid "$REDIS_PID"; REDIS_PID=""; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "# installing redis-server and redis-tools from Debian's packages" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools; } >/dev/null 2>&1 \
    || die "redis-server missing and could not be installed (apt-get install -y redis-server redis-tools)" 4
fi

echo "# building trellis into $OUT" >&2
(cd "$ROOT" && go build -o "$OUT/trellis" ./cmd/trellis) || die "go build ./cmd/trellis failed"

measure() { # name target pid -> prints the JSON line of `trellis bench memory`
  "${CP[@]}" "$OUT/trellis" bench memory --target "$2" --pid "$3" \
    --keys "$KEYS" --value-size "$VALUE_SIZE" --settle "$SETTLE" --json > "$OUT/$1.json" \
    || die "trellis bench memory against $1 ($2) failed"
  cat "$OUT/$1.json"
}

used_memory() { # host port -> INFO memory's used_memory in bytes, or nothing
  redis-cli -h "$1" -p "$2" INFO memory 2>/dev/null | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'
}

# --- trellis ------------------------------------------------------------------
"${SP[@]}" "$OUT/trellis" up --addr 127.0.0.1:0 --resp-addr 127.0.0.1:0 --log-level warn \
  > "$OUT/trellis.out" 2> "$OUT/trellis.log" &
TRELLIS_PID=$!
T_RESP=""
for _ in $(seq 100); do
  T_RESP=$(awk '$1 == "redis" {print $2}' "$OUT/trellis.out" 2>/dev/null)
  [[ -n "$T_RESP" ]] && break
  kill -0 "$TRELLIS_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$T_RESP" ]] || { cat "$OUT/trellis.log" >&2; die "trellis up did not start (log: $OUT/trellis.log)" 4; }
echo "# trellis pid=$TRELLIS_PID resp=$T_RESP affinity=$(taskset -pc "$TRELLIS_PID" | awk -F': ' '{print $2}')"
T_JSON=$(measure trellis "$T_RESP" "$TRELLIS_PID")
T_USED=$(used_memory "${T_RESP%:*}" "${T_RESP##*:}")
stop_pid "$TRELLIS_PID"; TRELLIS_PID=""

# --- redis --------------------------------------------------------------------
R_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${SP[@]}" redis-server --port "$R_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$OUT/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do redis-cli -p "$R_PORT" PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis-cli -p "$R_PORT" PING 2>/dev/null | grep -q PONG || die "redis-server did not start (log: $OUT/redis.log)" 4
echo "# redis pid=$REDIS_PID port=$R_PORT ($(redis-server --version | awk '{print $3}')) affinity=$(taskset -pc "$REDIS_PID" | awk -F': ' '{print $2}')"
R_JSON=$(measure redis "127.0.0.1:$R_PORT" "$REDIS_PID")
R_USED=$(used_memory 127.0.0.1 "$R_PORT")
stop_pid "$REDIS_PID"; REDIS_PID=""

# --- summary ------------------------------------------------------------------
python3 - "$T_JSON" "$R_JSON" "${T_USED:-}" "${R_USED:-}" <<'EOF'
import json, sys
t, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
used = dict(trellis=sys.argv[3], redis=sys.argv[4])
print("# %d keys x %d-byte values" % (t["keys"], t["value_size"]))
print("# %-8s %10s %12s %12s %14s %8s" % ("server", "RSS MiB", "bytes/key", "before MiB", "growth B/key", "dbsize"))
for name, x in (("trellis", t), ("redis", r)):
    print("# %-8s %10.1f %12.1f %12.1f %14.1f %8d" % (name, x["rss_mib"], x["bytes_per_key"],
          x["rss_before_bytes"] / 2**20, x["delta_bytes_per_key"], x["dbsize"]))
for name, u in used.items():
    if u:
        print("# %s INFO used_memory (its own accounting, not RSS): %.1f MiB" % (name, int(u) / 2**20))
print("RSS trellis=%.1f redis=%.1f ratio=%.3f" % (t["rss_mib"], r["rss_mib"], t["rss_bytes"] / r["rss_bytes"]))
EOF
