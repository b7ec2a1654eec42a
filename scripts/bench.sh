#!/usr/bin/env bash
# Benchmark the gateway against the built-in demo server with `mcp-gateway bench`:
# the same tool call, direct to the demo server and through the gateway, for
# both protocol eras at concurrency 1 and 32. Prints a markdown table.
#
#   scripts/bench.sh                      # 10 s per run (+1 s warmup), 8 runs
#   BENCH_DURATION_S=3 scripts/bench.sh   # quicker
#   BENCH_CONCURRENCY="1 8 32" BENCH_ERAS=handshake scripts/bench.sh
#   BENCH_REPEAT=3 scripts/bench.sh      # best of 3 per cell, for a busy machine
#   BENCH_BIN=path/to/mcp-gateway scripts/bench.sh   # that binary, no build
#   BENCH_REFERENCE=none scripts/bench.sh # without the HAProxy reference row
#
# Reference: when `haproxy` is installed (BENCH_REFERENCE=haproxy, the
# default then), each row also runs the bench through HAProxy in HTTP mode
# in front of the same demo server, with keep-alive and connection reuse to
# it: what a plain, MCP-unaware HTTP proxy costs on the same machine in the
# same run, so the gateway's ratio can be read against it.
#
# All three processes (demo server, gateway, bench) share this machine's
# cores; every process this script starts is killed when it exits.
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
duration_s="${BENCH_DURATION_S:-10}"
warmup_s="${BENCH_WARMUP_S:-1}"
concurrency_levels="${BENCH_CONCURRENCY:-1 32}"
eras="${BENCH_ERAS:-handshake stateless}"
repeat="${BENCH_REPEAT:-1}"
tool="${BENCH_TOOL:-echo}"
default_args='{"message":"hi"}'
tool_args="${BENCH_ARGS:-$default_args}"

start_demo demo
demo_pid=$!
direct_url="$(demo_url demo)"
start_gateway gateway "[[backends]]
name = \"demo\"
transport = \"streamable_http\"
url = \"$direct_url\""
gateway_url="$(gateway_url gateway)"

reference="${BENCH_REFERENCE:-haproxy}"
if [[ "$reference" == haproxy ]] && ! command -v haproxy >/dev/null; then
    echo "haproxy is not installed: no reference row (BENCH_REFERENCE=none to silence this)" >&2
    reference=none
fi
reference_url=""
if [[ "$reference" == haproxy ]]; then
    demo_port="$(grep -o -E ':[0-9]+/' <<<"$direct_url" | tr -d :/)"
    reference_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    cat >"$work/haproxy.cfg" <<CFG
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend mcp
    bind 127.0.0.1:$reference_port
    default_backend demo
backend demo
    server demo 127.0.0.1:$demo_port
CFG
    haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
    pids+=($!)
    reference_url="http://127.0.0.1:$reference_port/mcp"
    for _ in $(seq 50); do
        curl -s -o /dev/null "$reference_url" && break
        sleep 0.1
    done
fi

# On the multiplexed route a tool is `demo__echo` when names are prefixed;
# ask the gateway which name it shows.
gateway_tool="$tool"
tools="$(curl -s -X POST "$gateway_url" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/list' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}}}' || true)"
if grep -q "\"demo__$tool\"" <<<"$tools"; then
    gateway_tool="demo__$tool"
fi

# CPU accounting, so a reader can tell the gateway's cost per call and whether
# anything else was running: seconds of CPU of one process, of the machine.
clock_ticks="$(getconf CLK_TCK)"
process_cpu_s() { awk -v hz="$clock_ticks" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
machine_busy_s() { awk -v hz="$clock_ticks" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }

# bench URL TOOL ERA CONCURRENCY: one JSON summary line, with the CPU seconds
# the demo server, the gateway, the bench and the whole machine used meanwhile.
bench() {
    local demo_before gateway_before busy_before bench_cpu
    demo_before="$(process_cpu_s "$demo_pid")"
    gateway_before="$(process_cpu_s "$gateway_pid")"
    busy_before="$(machine_busy_s)"
    {
        TIMEFORMAT='%3U %3S'
        time "$bin" bench --url "$1" --tool "$2" --era "$3" --concurrency "$4" \
            --duration-s "$duration_s" --warmup-s "$warmup_s" --args "$tool_args" --json \
            >"$work/run.json" 2>"$work/run.err"
    } 2>"$work/run.time"
    if [[ -s "$work/run.err" ]]; then
        sed "s|^|$1 $3 c=$4: |" "$work/run.err" >&2
    fi
    bench_cpu="$(awk '{ printf "%.3f", $1 + $2 }' "$work/run.time")"
    sed -E "s/\}\$/,\"demo_cpu_s\":$(awk -v a="$demo_before" -v b="$(process_cpu_s "$demo_pid")" 'BEGIN { printf "%.3f", b - a }'),\"gateway_cpu_s\":$(awk -v a="$gateway_before" -v b="$(process_cpu_s "$gateway_pid")" 'BEGIN { printf "%.3f", b - a }'),\"bench_cpu_s\":$bench_cpu,\"busy_cpu_s\":$(awk -v a="$busy_before" -v b="$(machine_busy_s)" 'BEGIN { printf "%.3f", b - a }')}/" "$work/run.json"
}
# CPU-seconds used by anything but the demo server, the gateway and the bench.
other_cpu_s() {
    awk -v busy="$(field busy_cpu_s "$1")" -v d="$(field demo_cpu_s "$1")" \
        -v g="$(field gateway_cpu_s "$1")" -v b="$(field bench_cpu_s "$1")" \
        'BEGIN { x = busy - d - g - b; printf "%.3f", x < 0 ? 0 : x }'
}
# best OLD NEW: the summary with the higher rps. Other load on the machine
# only ever slows a run down, so the best of several is the least disturbed.
best() {
    if [[ -z "$1" ]] || awk -v a="$(field rps "$1")" -v b="$(field rps "$2")" 'BEGIN { exit !(b > a) }'; then
        echo "$2"
    else
        echo "$1"
    fi
}

echo "demo server: $direct_url   gateway: $gateway_url (tool $gateway_tool)" >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
echo "each run: ${warmup_s} s warmup + ${duration_s} s measured, best of $repeat" >&2
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo
echo "| era | concurrency | direct rps | gateway rps | ratio | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | CPU µs/call: demo, gateway | other load, CPU-s (direct/gateway) | errors, all runs (direct/gateway) | HAProxy rps (ratio) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for era in $eras; do
    for concurrency in $concurrency_levels; do
        direct="" gateway="" proxied="" direct_errors=0 gateway_errors=0
        for _ in $(seq "$repeat"); do
            if [[ -n "$reference_url" ]]; then
                proxied="$(best "$proxied" "$(bench "$reference_url" "$tool" "$era" "$concurrency")")"
            fi
            run="$(bench "$direct_url" "$tool" "$era" "$concurrency")"
            direct="$(best "$direct" "$run")"
            direct_errors=$((direct_errors + $(field errors "$run")))
            run="$(bench "$gateway_url" "$gateway_tool" "$era" "$concurrency")"
            gateway="$(best "$gateway" "$run")"
            gateway_errors=$((gateway_errors + $(field errors "$run")))
        done
        awk -v era="$era" -v c="$concurrency" \
            -v drps="$(field rps "$direct")" -v grps="$(field rps "$gateway")" \
            -v dp50="$(field p50_ms "$direct")" -v gp50="$(field p50_ms "$gateway")" \
            -v dp99="$(field p99_ms "$direct")" -v gp99="$(field p99_ms "$gateway")" \
            -v derr="$direct_errors" -v gerr="$gateway_errors" \
            -v greq="$(field calls_total "$gateway")" \
            -v gdemo="$(field demo_cpu_s "$gateway")" -v ggw="$(field gateway_cpu_s "$gateway")" \
            -v dother="$(other_cpu_s "$direct")" -v gother="$(other_cpu_s "$gateway")" \
            -v prps="$(field rps "$proxied")" \
            'BEGIN {
                ratio = drps > 0 ? sprintf("%.0f%%", 100 * grps / drps) : "n/a";
                # Per call through the gateway, warmup included on both sides.
                cost = greq > 0 ? sprintf("%.0f, %.0f", gdemo * 1e6 / greq, ggw * 1e6 / greq) : "n/a";
                reference = prps > 0 && drps > 0 ? sprintf("%.0f (%.0f%%)", prps, 100 * prps / drps) : "n/a";
                printf "| %s | %d | %.0f | %.0f | %s | %.3f ms | %.3f ms | %+.3f ms | %.3f ms | %.3f ms | %s | %.1f / %.1f | %d / %d | %s |\n",
                    era, c, drps, grps, ratio, dp50, gp50, gp50 - dp50, dp99, gp99, cost, dother, gother, derr, gerr, reference
            }'
    done
done
