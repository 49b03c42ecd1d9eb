#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: deterministic enough
# to compare two builds of tidegate on a busy machine, where req/s is not.
#
#   bench/callgrind.sh target/release/tidegate [requests-seconds]
#   WORKERS=2 bench/callgrind.sh target/release/tidegate   # proxy.workers (1)
#
# Starts one nginx origin pair and tidegate under callgrind (ports as in
# compare.sh), warms up, zeroes the counters, sends wrk load (64 keep-alive
# connections) for the given seconds, dumps the counters and prints
# "instructions/request", less what tidegate spends idle over as long (measured
# just before). Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: bench/callgrind.sh TIDEGATE_BINARY [SECONDS]}
SECS=${2:-10}
WORKERS=${WORKERS:-1}
WORK=$(mktemp -d /tmp/tidegate-callgrind.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export PATH="$PATH:/usr/sbin" RUST_LOG=warn
wait_port() {
    local deadline=$((SECONDS + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "port $1 never opened" >&2; exit 1; }
        sleep 0.2
    done
}
for conf in origin-nginx.conf tidegate.toml; do
    sed -e "s#@DIR@#$WORK#g" -e "s#@NOFILE@#4096#g" -e "s#^workers = 1#workers = $WORKERS#" \
        "bench/$conf" >"$WORK/$conf"
done
nginx -p "$WORK" -c "$WORK/origin-nginx.conf" >/dev/null 2>&1 &
PIDS+=("$!")
valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$WORK/cg.%p" \
    "$BIN" serve --config "$WORK/tidegate.toml" >"$WORK/tidegate.out" 2>&1 &
PIDS+=("$!")
VG=$!
wait_port 18001
wait_port 18080
timeout 60 wrk -t1 -c64 -d3s http://127.0.0.1:18080/ >/dev/null
# Instructions of the latest dump.
dumped() {
    callgrind_control -d "$VG" >/dev/null 2>&1
    sleep 1
    awk '/^(summary|totals):/ {print $2; exit}' "$(ls -t "$WORK"/cg.* | head -1)"
}
# What tidegate spends with no requests (timers, the recorder, the store
# writer) runs by wall-clock time, and under valgrind the request rate follows
# the machine's load: that share is measured idle and taken out, so the
# figure does not move with how many requests the window happened to hold.
IDLE_SECS=5
callgrind_control -z "$VG" >/dev/null 2>&1
sleep "$IDLE_SECS"
idle=$(dumped)
callgrind_control -z "$VG" >/dev/null 2>&1
requests=$(timeout $((SECS + 60)) wrk -t1 -c64 -d"${SECS}s" -s bench/report.lua \
    http://127.0.0.1:18080/ | awk '$1 == "RESULT" {print $2}')
ir=$(dumped)
per_request=$(((ir - idle * SECS / IDLE_SECS) / requests))
echo "requests $requests instructions $ir idle/s $((idle / IDLE_SECS))" \
    "instructions/request $per_request"
if [ -n "${CALLGRIND_KEEP:-}" ]; then cp "$(ls -t "$WORK"/cg.* | head -1)" "$CALLGRIND_KEEP"; fi
