#!/usr/bin/env bash
# cpu_per_op.sh PORT -- user, system and total CPU microseconds per operation
# of the server listening on PORT (Trellis's Redis port or a redis-server),
# for redis-benchmark's PING, SET and GET.
#
# The load generator runs on CPU $CLIENT_CPU (default 0); start the server
# pinned the same way (taskset -c 0 trellis up) to compare with redis_vs.sh's
# PIN=same. CPU comes from /proc/<pid>/stat, in clock ticks: use N large
# enough for a few seconds per test.
#
# Env: N=300000 C=50 PIPE=1 CLIENT_CPU=0
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 PORT" >&2; exit 2; }
PORT=$1; N=${N:-300000}; C=${C:-50}; PIPE=${PIPE:-1}; CLIENT_CPU=${CLIENT_CPU:-0}
PID=$(ss -ltnpH "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
[[ -n "$PID" ]] || { echo "cpu_per_op: nothing listens on $PORT (or ss cannot see its pid)" >&2; exit 2; }
TCK=$(getconf CLK_TCK)
echo "# pid $PID ($(cat /proc/$PID/comm)), -c $C -P $PIPE, n=$N"
taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t set -d 100 -r 100000 -n 200000 -c 10 -P 64 -q >/dev/null 2>&1
for t in ping_mbulk set get; do
  read -r u0 s0 < <(awk '{sub(/.*\) /, ""); print $12, $13}' "/proc/$PID/stat")
  rps=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t "$t" -d 100 -r 100000 -n "$N" -c "$C" -P "$PIPE" -q 2>&1 \
        | tr '\r' '\n' | grep "requests per second" | tail -1)
  read -r u1 s1 < <(awk '{sub(/.*\) /, ""); print $12, $13}' "/proc/$PID/stat")
  awk -v t="$t" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v n="$N" -v hz="$TCK" -v r="$rps" \
    'BEGIN { printf "%-10s user %.2f  sys %.2f  total %.2f us/op   (%s)\n", t, u/hz*1e6/n, s/hz*1e6/n, (u+s)/hz*1e6/n, r }'
done
