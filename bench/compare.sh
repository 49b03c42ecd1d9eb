#!/usr/bin/env bash
# Compares tidegate with nginx and HAProxy, and with no proxy at all, on this
# machine, in one run, and prints one markdown table per load.
#
#   bench/compare.sh                                   # full run (~17 minutes)
#   BENCH_DURATION=3s BENCH_WARMUP=1s BENCH_ROUNDS=1 bench/compare.sh  # check (~3 minutes)
#
# What it does, in order:
#   1. installs nginx, haproxy, wrk and h2load (nghttp2-client) from Debian
#      packages when missing, and builds tidegate in release mode;
#   2. starts the origins: one nginx worker answering `200 ok` on 18001 and
#      18002 (nginx, not `tidegate demo-backend`, so that the origin is never
#      the bottleneck), pinned with the load generator on CPU 0;
#   3. starts tidegate (18080), nginx (18090, h2c 18091) and HAProxy (18100,
#      h2c 18101), each with one worker, pinned to CPU 1, configured alike
#      (bench/tidegate.toml, bench/proxy-nginx.conf, bench/haproxy.cfg);
#   4. for each round, interleaved: wrk (HTTP/1.1 keep-alive) at each
#      connection count against the origins directly and each proxy, then
#      h2load (HTTP/2) against the origins (h2c on 18003) and each proxy; every
#      run is preceded by a warm-up;
#      the proxy's CPU time comes from /proc/PID/stat, its peak RSS from VmHWM;
#   5. opens BENCH_IDLE idle keep-alive connections to each proxy and reports
#      the memory they cost, in bytes per connection;
#   6. prints the tables (medians over rounds, ratios to nginx) and stops
#      everything it started, also on error, Ctrl-C or when its time is up.
#
# Settings (environment):
#   BENCH_DURATION     measured time per run, like 12s           (12s)
#   BENCH_WARMUP       warm-up per run                           (2s)
#   BENCH_ROUNDS       interleaved rounds; tables show medians   (5)
#   BENCH_CONNECTIONS  wrk connection counts                     ("64 1024")
#   BENCH_H2           h2load connections x streams, or "" to skip (64x8)
#   BENCH_IDLE         idle connections for the memory table, 0 to skip (10000)
#   BENCH_PROXIES      proxies to measure                        ("tidegate nginx haproxy")
#   BENCH_LOADGEN      HTTP/1.1 load generator: wrk or oha       (wrk)
#                      wrk (C, one thread) leaves the most of its core to the
#                      origins; oha is installed with `cargo install` if chosen
#   BENCH_PROXY_CPU / BENCH_LOAD_CPU   cores for the proxy / for load and origins (1 / 0)
#   TIDEGATE_BIN       use this binary instead of building one
#   TIDEGATE_B_BIN     a second tidegate binary, measured as proxy "tidegate-b"
#                      (add it to BENCH_PROXIES) in the same interleaved rounds:
#                      an A/B of a change on this noisy machine (ports 18082-18083)
#   BENCH_OUT          where raw results and the table go        (bench/out)
#   BENCH_MAX_SECONDS  hard limit for the whole run              (computed)
#
# Ports used: 18001-18003, 18080-18083, 18090-18091, 18100-18101.

set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DURATION=${BENCH_DURATION:-12s}
BENCH_WARMUP=${BENCH_WARMUP:-2s}
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-"64 1024"}
BENCH_H2=${BENCH_H2-64x8}
BENCH_IDLE=${BENCH_IDLE:-10000}
BENCH_PROXIES=${BENCH_PROXIES:-"tidegate nginx haproxy"}
BENCH_LOADGEN=${BENCH_LOADGEN:-wrk}
BENCH_PROXY_CPU=${BENCH_PROXY_CPU:-1}
BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-0}
BENCH_OUT=${BENCH_OUT:-bench/out}

seconds() { local v=${1%s}; echo "${v%.*}"; }
DUR_S=$(seconds "$BENCH_DURATION")
WARM_S=$(seconds "$BENCH_WARMUP")
read -r -a CONNS <<<"$BENCH_CONNECTIONS"
read -r -a PROXIES <<<"$BENCH_PROXIES"

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- everything started is recorded here and stopped on exit ---------------

STARTED=()
WORK=$(mktemp -d /tmp/tidegate-bench.XXXXXX)
WATCHDOG=""

cleanup() {
    local status=$? pid
    [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null || true
    for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "$status" != 0 ] && [ -d "$WORK" ]; then
        mkdir -p "$BENCH_OUT/failed"
        cp "$WORK"/*.out "$WORK"/*error.log "$BENCH_OUT/failed/" 2>/dev/null || true
        log "logs of the failed run kept in $BENCH_OUT/failed"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Starts a background process pinned to a core and records its pid.
start_pinned() {
    local cpu=$1 name=$2
    shift 2
    taskset -c "$cpu" "$@" >"$WORK/$name.out" 2>&1 &
    STARTED+=("$!")
    LAST_PID=$!
}

wait_port() {
    local port=$1 deadline=$((SECONDS + 15))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "nothing listens on port $port; see $WORK/*.out"
        sleep 0.1
    done
}

# --- tools -----------------------------------------------------------------

install_tools() {
    local missing=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ "$BENCH_LOADGEN" = oha ] && ! command -v oha >/dev/null; then
        log "installing oha (cargo install, a few minutes)"
        cargo install --locked oha >&2
    fi
}

case $BENCH_LOADGEN in wrk | oha) ;; *) die "BENCH_LOADGEN must be wrk or oha" ;; esac
export PATH="$PATH:/usr/sbin:${CARGO_HOME:-$HOME/.cargo}/bin" RUST_LOG=warn
install_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
NOFILE=$(ulimit -n)
MAXCONN=$(((NOFILE - 200) / 2))
[ "$MAXCONN" -le 30000 ] || MAXCONN=30000
if [ "$BENCH_IDLE" -gt $((MAXCONN - 200)) ]; then
    BENCH_IDLE=$((MAXCONN - 200))
    log "ulimit -n is $NOFILE (HAProxy needs two per connection): holding $BENCH_IDLE idle connections"
fi

if [ -z "${TIDEGATE_BIN:-}" ]; then
    log "building tidegate (release)"
    cargo build --release --locked --bin tidegate >&2
    TIDEGATE_BIN=target/release/tidegate
fi
[ -x "$TIDEGATE_BIN" ] || die "no tidegate binary at $TIDEGATE_BIN"

# --- time bound --------------------------------------------------------------

per_run=$((DUR_S + WARM_S + 3))
h2_runs=0
[ -n "$BENCH_H2" ] && h2_runs=$((${#PROXIES[@]} + 1))
runs=$((BENCH_ROUNDS * (${#CONNS[@]} * (${#PROXIES[@]} + 1) + h2_runs)))
BENCH_MAX_SECONDS=${BENCH_MAX_SECONDS:-$((runs * per_run + ${#PROXIES[@]} * 150 + 120))}
log "$runs measured runs; stopping after ${BENCH_MAX_SECONDS}s whatever happens"
# One-second sleeps, so that nothing outlives the harness by more than a second.
(for ((i = 0; i < BENCH_MAX_SECONDS; i++)); do sleep 1; done; kill -TERM $$) >/dev/null 2>&1 &
WATCHDOG=$!

# --- origins and proxies ---------------------------------------------------

for conf in origin-nginx.conf proxy-nginx.conf haproxy.cfg tidegate.toml; do
    sed -e "s#@DIR@#$WORK#g" -e "s#@MAXCONN@#$MAXCONN#g" -e "s#@NOFILE@#$NOFILE#g" \
        "bench/$conf" >"$WORK/$conf"
done
mkdir -p "$WORK/b"
sed -e 's/18080/18082/; s/18081/18083/' -e "s#$WORK/tidegate.db#$WORK/b/tidegate.db#" \
    "$WORK/tidegate.toml" >"$WORK/b/tidegate.toml"

start_pinned "$BENCH_LOAD_CPU" origin nginx -p "$WORK" -c "$WORK/origin-nginx.conf"
ORIGIN_MASTER=$LAST_PID
wait_port 18001
wait_port 18002
wait_port 18003
declare -A PID PORT H2PORT
PID[direct]=$(pgrep -P "$ORIGIN_MASTER" | head -1)
PORT[direct]=18001 H2PORT[direct]=18003

for proxy in "${PROXIES[@]}"; do
    case $proxy in
    tidegate)
        start_pinned "$BENCH_PROXY_CPU" tidegate \
            "$TIDEGATE_BIN" serve --config "$WORK/tidegate.toml"
        PID[tidegate]=$LAST_PID PORT[tidegate]=18080 H2PORT[tidegate]=18080
        wait_port 18080
        ;;
    tidegate-b)
        [ -x "${TIDEGATE_B_BIN:-}" ] || die "tidegate-b needs TIDEGATE_B_BIN, an executable"
        start_pinned "$BENCH_PROXY_CPU" tidegate-b \
            "$TIDEGATE_B_BIN" serve --config "$WORK/b/tidegate.toml"
        PID[tidegate-b]=$LAST_PID PORT[tidegate-b]=18082 H2PORT[tidegate-b]=18082
        wait_port 18082
        ;;
    nginx)
        start_pinned "$BENCH_PROXY_CPU" nginx nginx -p "$WORK" -c "$WORK/proxy-nginx.conf"
        wait_port 18090
        # The worker does the work; the master only supervises it.
        PID[nginx]=$(pgrep -P "$LAST_PID" | head -1) PORT[nginx]=18090 H2PORT[nginx]=18091
        ;;
    haproxy)
        start_pinned "$BENCH_PROXY_CPU" haproxy haproxy -db -f "$WORK/haproxy.cfg"
        PID[haproxy]=$LAST_PID PORT[haproxy]=18100 H2PORT[haproxy]=18101
        wait_port 18100
        ;;
    *) die "unknown proxy $proxy" ;;
    esac
    [ -n "${PID[$proxy]}" ] || die "no worker process for $proxy"
done

# --- measuring ---------------------------------------------------------------

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

mkdir -p "$BENCH_OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$BENCH_OUT/raw-$STAMP.tsv"
IDLE="$BENCH_OUT/idle-$STAMP.tsv"
TABLE="$BENCH_OUT/table-$STAMP.md"
: >"$RAW"

# One wrk run: prints "requests duration_us errors p50_us p99_us p999_us".
wrk_run() {
    local port=$1 conns=$2 duration=$3
    taskset -c "$BENCH_LOAD_CPU" timeout $((DUR_S + WARM_S + 30)) \
        wrk -t1 -c"$conns" -d"$duration" --timeout 5s -s bench/report.lua \
        "http://127.0.0.1:$port/" | awk '$1 == "RESULT" {print $2, $3, $4, $5, $6, $7}'
}

# One oha run, same output as wrk_run. oha counts transport errors apart
# from answers; both count as errors here, like wrk's.
oha_run() {
    local port=$1 conns=$2 duration=$3 json
    json=$(taskset -c "$BENCH_LOAD_CPU" timeout $((DUR_S + WARM_S + 30)) \
        oha --no-tui -c "$conns" -z "$duration" -t 5s --output-format json \
        "http://127.0.0.1:$port/") || return 0
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
codes = r.get("statusCodeDistribution") or {}
ok = sum(n for c, n in codes.items() if 200 <= int(c) < 400)
errors = sum(codes.values()) - ok + sum((r.get("errorDistribution") or {}).values())
p = r["latencyPercentiles"]
us = lambda s: int((s or 0) * 1e6)
print(ok, int(r["summary"]["total"] * 1e6), errors, us(p["p50"]), us(p["p99"]), us(p["p99.9"]))
' <<<"$json"
}

# One h2load run, same output as wrk_run, percentiles from its request log.
h2_run() {
    local port=$1 conns=${BENCH_H2%x*} streams=${BENCH_H2#*x} duration=$2 logfile=$3
    taskset -c "$BENCH_LOAD_CPU" timeout $((DUR_S + WARM_S + 30)) \
        h2load -t1 -c"$conns" -m"$streams" -D"$duration" --log-file="$logfile" \
        "http://127.0.0.1:$port/" >/dev/null
    awk '{ if ($2 >= 200 && $2 < 300) print $3; else errors++ }
         END { print "ERR", errors + 0 }' "$logfile" | sort -n >"$logfile.sorted"
    local errors n
    errors=$(awk '$1 == "ERR" {print $2}' "$logfile.sorted")
    grep -v ERR "$logfile.sorted" >"$logfile.ok" || true
    n=$(wc -l <"$logfile.ok")
    [ "$n" -gt 0 ] || { echo "0 $((duration * 1000000)) $errors 0 0 0"; return; }
    awk -v n="$n" -v d="$duration" -v e="$errors" '
        function rank(q) { r = int(n * q + 0.5); return r < 1 ? 1 : r }
        NR == rank(0.5) { p50 = $1 }
        NR == rank(0.99) { p99 = $1 }
        NR == rank(0.999) { p999 = $1 }
        END { print n, d * 1000000, e, p50, p99, p999 }' "$logfile.ok"
    rm -f "$logfile" "$logfile.sorted" "$logfile.ok"
}

# Measures one target under one load and appends a raw row.
measure() {
    local load=$1 target=$2 round=$3 kind=$4 conns=$5
    local pid=${PID[$target]} before after result hwm
    if [ "$kind" = h1 ]; then
        "${BENCH_LOADGEN}_run" "${PORT[$target]}" "$conns" "$BENCH_WARMUP" >/dev/null
        before=$(cpu_ticks "$pid")
        result=$("${BENCH_LOADGEN}_run" "${PORT[$target]}" "$conns" "$BENCH_DURATION")
    else
        h2_run "${H2PORT[$target]}" "$WARM_S" "$WORK/h2-warm.log" >/dev/null
        before=$(cpu_ticks "$pid")
        result=$(h2_run "${H2PORT[$target]}" "$DUR_S" "$WORK/h2.log")
    fi
    after=$(cpu_ticks "$pid")
    hwm=$(status_kb "$pid" VmHWM)
    [ -n "$result" ] || { log "$target $load: no result"; result="0 1 1 0 0 0"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$target" "$round" \
        "$(tr ' ' '\t' <<<"$result")" "$((after - before))" "$hwm" >>"$RAW"
    log "round $round $load $target: $result (ticks $((after - before)))"
}

# Rotates the proxies' order each round, so no proxy always runs first.
rotated() {
    local round=$1 n=${#PROXIES[@]} i
    for ((i = 0; i < n; i++)); do echo "${PROXIES[$(((i + round) % n))]}"; done
}

for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    mapfile -t order < <(rotated "$round")
    for conns in "${CONNS[@]}"; do
        for target in direct "${order[@]}"; do
            measure "HTTP/1.1, $conns connections" "$target" "$round" h1 "$conns"
        done
    done
    if [ -n "$BENCH_H2" ]; then
        for target in direct "${order[@]}"; do
            measure "HTTP/2, ${BENCH_H2%x*} connections x ${BENCH_H2#*x} streams" \
                "$target" "$round" h2 0
        done
    fi
done

# --- idle connections ------------------------------------------------------

if [ "$BENCH_IDLE" -gt 0 ]; then
    : >"$IDLE"
    for target in "${PROXIES[@]}"; do
        pid=${PID[$target]}
        before=$(status_kb "$pid" VmRSS)
        taskset -c "$BENCH_LOAD_CPU" python3 bench/idle_clients.py \
            "${PORT[$target]}" "$BENCH_IDLE" 140 >"$WORK/idle.out" 2>&1 &
        client=$!
        STARTED+=("$client")
        deadline=$((SECONDS + 130))
        until grep -q READY "$WORK/idle.out"; do
            [ "$SECONDS" -lt "$deadline" ] && kill -0 "$client" 2>/dev/null ||
                die "idle client for $target did not get ready"
            sleep 0.2
        done
        sleep 1 # let the proxy finish its bookkeeping for the last connections
        held=$(awk '$1 == "READY" {print $2}' "$WORK/idle.out")
        after=$(status_kb "$pid" VmRSS)
        kill "$client" 2>/dev/null || true
        wait "$client" 2>/dev/null || true
        printf '%s\t%s\t%s\t%s\n' "$target" "$held" "$before" "$after" >>"$IDLE"
        log "idle $target: $held connections, RSS ${before} kB -> ${after} kB"
        sleep 2 # the proxy closes the connections before the next one is measured
    done
fi

# --- the table ---------------------------------------------------------------

{
    echo "<!-- compare:begin -->"
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores," \
        "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo);" \
        "$BENCH_ROUNDS round(s) of $BENCH_DURATION (warm-up $BENCH_WARMUP), medians;" \
        "proxy on CPU $BENCH_PROXY_CPU, load and origins on CPU $BENCH_LOAD_CPU;" \
        "HTTP/1.1 load from $BENCH_LOADGEN, HTTP/2 from h2load."
    echo "Ratios in brackets are to nginx. Versions: $(nginx -v 2>&1 | sed 's/.*: //')," \
        "$(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), $("$TIDEGATE_BIN" --version)."
    echo
    python3 bench/summarize.py "$RAW" "$IDLE"
    echo "<!-- compare:end -->"
} | tee "$TABLE"
log "raw rows in $RAW; table in $TABLE"
