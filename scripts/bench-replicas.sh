#!/usr/bin/env bash
# Several replicas (issue 10): throughput of stateless (2026-07-28) tools/call
# in the same run through
#   mem      1 gateway, in-memory state;
#   redis-0  1 gateway with [state] redis_url, no rate limits (revocation
#            checks only: they must cost no Redis round trip);
#   redis-1  1 gateway with Redis and the rate limits (shared buckets);
#   redis-3  3 gateways with Redis and the same limits behind HAProxy
#            (examples/haproxy.cfg, round-robin), sharing one set of buckets;
#            and the same 3 behind a copy of that config without
#            `option http-server-close` (connections to the replicas kept open).
# Every gateway has JWT auth on (HS256, one minted token: revocations are
# checked on every call) and the same limits where limits apply: per
# principal, per agent and a rule with a bucket per tool, far above the load
# so every call is decided and admitted. One demo server, one redis-server,
# all on this machine: read the replicas row as overhead, not scaling.
#
# Per row: the best of BENCH_REPEAT runs, the Redis round trips per message
# (mcp_gateway_state_store_round_trips_total of the row's gateways, summed,
# over every call they completed), the CPU per call of the row's gateways,
# of redis-server and of haproxy, and the CPU the rest of the machine used
# meanwhile ("other load").
#
#   scripts/bench-replicas.sh                          # 10 s per run, concurrency 32
#   BENCH_DURATION_S=5 BENCH_REPEAT=3 scripts/bench-replicas.sh
#   BENCH_BIN=target/release/mcp-gateway scripts/bench-replicas.sh
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
duration_s="${BENCH_DURATION_S:-10}"
warmup_s="${BENCH_WARMUP_S:-1}"
concurrency="${BENCH_CONCURRENCY:-32}"
repeat="${BENCH_REPEAT:-1}"

for tool in redis-server haproxy curl; do
    command -v "$tool" >/dev/null || { echo "$(basename "$0"): needs $tool (scripts/install-test-deps.sh)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" \
    >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=($!)
wait_for "$work/redis.log" 'Ready to accept connections' >/dev/null

start_demo demo
demo_pid=$!
backend="$(demo_url demo)"

# One policy file written before any gateway starts (start_gateway would
# rewrite its own allow-all for each gateway while earlier ones read it).
printf '@id("allow-all")\npermit(principal, action, resource);\n' >"$work/replicas-allow-all.cedar"
export BENCH_JWT_SECRET="bench-secret-0123456789-0123456789-abcdef"
issuer="https://idp.bench.invalid"
audience="https://gateway.bench.invalid/mcp"
common="[[backends]]
name = \"demo\"
transport = \"streamable_http\"
url = \"$backend\"
[auth]
mode = \"jwt\"
issuer = \"$issuer\"
audience = \"$audience\"
algorithms = [\"HS256\"]
hs256_secret_env = \"BENCH_JWT_SECRET\"
[policy]
files = [\"$work/replicas-allow-all.cedar\"]"
limits="[limits]
per_principal = { per_second = 1000000, burst = 1000000 }
per_agent = { per_second = 1000000, burst = 1000000 }
[[limits.rules]]
match = { tool = \"*\" }
rate = { per_second = 1000000, burst = 1000000 }"
state() { # KEY_PREFIX REPLICA_ID
    printf '[state]\nredis_url = "redis://127.0.0.1:%s"\nkey_prefix = "%s"\nreplica_id = "%s"\n' \
        "$redis_port" "$1" "$2"
}

declare -A gw_pid
start() { # NAME TOML (each gateway its own audit log, fsync = "batch")
    start_gateway "$1" "$2
[audit]
path = \"$work/$1-audit.jsonl\""
    gw_pid[$1]=$gateway_pid
}
start mem "$common
$limits"
start redis0 "$common
$(state bench-0: redis0)"
start redis1 "$common
$limits
$(state bench-1: redis1)"
for i in 1 2 3; do
    start "r3-$i" "$common
$limits
$(state bench-3: "r3-$i")"
done

addr_of() { gateway_url "$1" | sed -E 's|^http://||; s|/mcp$||'; }
admin_of() {
    wait_for "$work/$1.log" '"admin_addr":"127\.0\.0\.1:[0-9]+"' | grep -o -E '127\.0\.0\.1:[0-9]+'
}
declare -A url admin
for name in mem redis0 redis1 r3-1 r3-2 r3-3; do
    url[$name]="http://$(addr_of "$name")/mcp"
    admin[$name]="$(admin_of "$name")"
done

# examples/haproxy.cfg as is (`option http-server-close`: a new connection
# to a replica per request), and a copy keeping replica connections open.
start_haproxy() { # CONFIG PORT
    LB_ADDR="127.0.0.1:$2" \
        GW1_ADDR="$(addr_of r3-1)" GW1_ADMIN_PORT="${admin[r3-1]##*:}" \
        GW2_ADDR="$(addr_of r3-2)" GW2_ADMIN_PORT="${admin[r3-2]##*:}" \
        GW3_ADDR="$(addr_of r3-3)" GW3_ADMIN_PORT="${admin[r3-3]##*:}" \
        haproxy -f "$1" -db >>"$work/haproxy.log" 2>&1 &
    pids+=($!)
}
lb_port="$(free_port)"
start_haproxy examples/haproxy.cfg "$lb_port"
haproxy_pid=$!
grep -v 'option http-server-close' examples/haproxy.cfg >"$work/haproxy-keepalive.cfg"
lb_keepalive_port="$(free_port)"
start_haproxy "$work/haproxy-keepalive.cfg" "$lb_keepalive_port"
haproxy_keepalive_pid=$!

# Every replica ready (Redis reached) and HAProxy sending to all three.
for name in mem redis0 redis1 r3-1 r3-2 r3-3; do
    for _ in $(seq 100); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://${admin[$name]}/readyz")" == 200 ]] && break
        sleep 0.1
    done
done
sleep 2

token="$("$bin" token mint --sub bench-user --iss "$issuer" --aud "$audience" --ttl 3600 \
    --hs256-secret-env BENCH_JWT_SECRET 2>/dev/null)"

# Every setup answers before anything is measured (a replica that could not
# start properly would otherwise show up as errors in one row only).
for target in "${url[mem]}" "${url[redis0]}" "${url[redis1]}" "http://127.0.0.1:$lb_port/mcp" "http://127.0.0.1:$lb_keepalive_port/mcp"; do
    check="$("$bin" bench --url "$target" --era stateless --concurrency 3 --duration-s 0.5 --warmup-s 0 \
        --tool echo --args '{"message":"hi"}' --header "Authorization: Bearer $token" --json 2>&1 | tail -1)"
    if [[ "$(field errors "$check")" != 0 ]]; then
        echo "$(basename "$0"): $target does not answer calls: $check" >&2
        exit 1
    fi
done

clock_ticks="$(getconf CLK_TCK)"
process_cpu_s() { awk -v hz="$clock_ticks" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
cpu_of() { local sum=0 pid; for pid in "$@"; do sum="$(awk -v a="$sum" -v b="$(process_cpu_s "$pid")" 'BEGIN { printf "%.3f", a + b }')"; done; echo "$sum"; }
machine_busy_s() { awk -v hz="$clock_ticks" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
round_trips() { # ADMIN_ADDR...
    local sum=0 a n
    for a in "$@"; do
        n="$(curl -s "http://$a/metrics" | awk '/^mcp_gateway_state_store_round_trips_total / { print $2 }')"
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}

# run URL "GATEWAY PIDS" "ADMIN ADDRS": one JSON summary with the round
# trips, the CPU of the row's processes and of the rest of the machine.
run() {
    local trips_before gw_before redis_before lb_before demo_before busy_before bench_cpu
    trips_before="$(round_trips $3)"
    gw_before="$(cpu_of $2)"
    redis_before="$(process_cpu_s "$redis_pid")"
    lb_before="$(cpu_of $haproxy_pid $haproxy_keepalive_pid)"
    demo_before="$(process_cpu_s "$demo_pid")"
    busy_before="$(machine_busy_s)"
    {
        TIMEFORMAT='%3U %3S'
        time "$bin" bench --url "$1" --era stateless --concurrency "$concurrency" \
            --duration-s "$duration_s" --warmup-s "$warmup_s" --tool echo --args '{"message":"hi"}' \
            --header "Authorization: Bearer $token" --json >"$work/run.json" 2>"$work/run.err"
    } 2>"$work/run.time"
    [[ -s "$work/run.err" ]] && sed "s|^|$1: |" "$work/run.err" >&2
    bench_cpu="$(awk '{ printf "%.3f", $1 + $2 }' "$work/run.time")"
    local trips gw redis lb cpu demo busy
    trips=$(($(round_trips $3) - trips_before))
    gw="$(awk -v a="$gw_before" -v b="$(cpu_of $2)" 'BEGIN { printf "%.3f", b - a }')"
    redis="$(awk -v a="$redis_before" -v b="$(process_cpu_s "$redis_pid")" 'BEGIN { printf "%.3f", b - a }')"
    lb="$(awk -v a="$lb_before" -v b="$(cpu_of $haproxy_pid $haproxy_keepalive_pid)" 'BEGIN { printf "%.3f", b - a }')"
    cpu="$(awk -v g="$gw" -v r="$redis" -v l="$lb" 'BEGIN { printf "%.3f", g + r + l }')"
    demo="$(awk -v a="$demo_before" -v b="$(process_cpu_s "$demo_pid")" 'BEGIN { printf "%.3f", b - a }')"
    busy="$(awk -v a="$busy_before" -v b="$(machine_busy_s)" 'BEGIN { printf "%.3f", b - a }')"
    sed -E "s/\}\$/,\"trips\":$trips,\"gw_cpu_s\":$gw,\"redis_cpu_s\":$redis,\"lb_cpu_s\":$lb,\"other_cpu_s\":$(awk -v x="$busy" -v c="$cpu" -v d="$demo" -v b="$bench_cpu" 'BEGIN { o = x - c - d - b; printf "%.3f", o < 0 ? 0 : o }')}/" "$work/run.json"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "stateless tools/call, concurrency $concurrency, ${warmup_s} s warmup + ${duration_s} s measured, best of $repeat" >&2
echo "| setup | rps | vs mem | p50 | p99 | Redis round trips / message | CPU µs/call: gateways, redis, haproxy | other load, CPU-s | errors, all runs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
declare -A best errors
rows=(mem redis0 redis1 redis3 redis3ka)
for _ in $(seq "$repeat"); do
    for row in "${rows[@]}"; do
        case "$row" in
            mem) r="$(run "${url[mem]}" "${gw_pid[mem]}" "${admin[mem]}")" ;;
            redis0) r="$(run "${url[redis0]}" "${gw_pid[redis0]}" "${admin[redis0]}")" ;;
            redis1) r="$(run "${url[redis1]}" "${gw_pid[redis1]}" "${admin[redis1]}")" ;;
            redis3) r="$(run "http://127.0.0.1:$lb_port/mcp" "${gw_pid[r3-1]} ${gw_pid[r3-2]} ${gw_pid[r3-3]}" \
                "${admin[r3-1]} ${admin[r3-2]} ${admin[r3-3]}")" ;;
            redis3ka) r="$(run "http://127.0.0.1:$lb_keepalive_port/mcp" "${gw_pid[r3-1]} ${gw_pid[r3-2]} ${gw_pid[r3-3]}" \
                "${admin[r3-1]} ${admin[r3-2]} ${admin[r3-3]}")" ;;
        esac
        errors[$row]=$(( ${errors[$row]:-0} + $(field errors "$r") ))
        if [[ -z "${best[$row]:-}" ]] || awk -v a="$(field rps "$r")" -v b="$(field rps "${best[$row]}")" 'BEGIN { exit !(a > b) }'; then
            best[$row]="$r"
        fi
    done
done
mem_rps="$(field rps "${best[mem]}")"
for row in "${rows[@]}"; do
    r="${best[$row]}"
    case "$row" in
        mem) label="1 replica, in memory" ;;
        redis0) label="1 replica, Redis, no limits" ;;
        redis1) label="1 replica, Redis, limits" ;;
        redis3) label="3 replicas, Redis, limits, HAProxy (examples/haproxy.cfg)" ;;
        redis3ka) label="3 replicas, Redis, limits, HAProxy keeping replica connections open" ;;
    esac
    awk -v label="$label" -v rps="$(field rps "$r")" -v mem="$mem_rps" -v p50="$(field p50_ms "$r")" \
        -v p99="$(field p99_ms "$r")" -v trips="$(field trips "$r")" -v calls="$(field calls_total "$r")" \
        -v gw="$(field gw_cpu_s "$r")" -v redis="$(field redis_cpu_s "$r")" -v lb="$(field lb_cpu_s "$r")" -v other="$(field other_cpu_s "$r")" -v err="${errors[$row]}" -v row="$row" \
        'BEGIN { printf "| %s | %.0f | %.0f%% | %.3f ms | %.3f ms | %s | %.0f, %.0f, %.0f | %.1f | %d |\n",
                 label, rps, (mem > 0 ? 100 * rps / mem : 0), p50, p99,
                 (row == "mem" ? "–" : sprintf("%.3f", calls > 0 ? trips / calls : 0)),
                 (calls > 0 ? 1e6 * gw / calls : 0), (calls > 0 ? 1e6 * redis / calls : 0),
                 (calls > 0 ? 1e6 * lb / calls : 0), other, err }'
done
echo "haproxy spread (requests per replica of the 3): $(for n in r3-1 r3-2 r3-3; do curl -s "http://${admin[$n]}/metrics" | awk '/^mcp_gateway_requests_total\{/ { s += $2 } END { printf "%d ", s }'; done)" >&2
