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
#
# All three processes (demo server, gateway, bench) share this machine's
# cores; every process this script starts is killed when it exits.
set -euo pipefail

cd "$(dirname "$0")/.."
duration_s="${BENCH_DURATION_S:-10}"
warmup_s="${BENCH_WARMUP_S:-1}"
concurrency_levels="${BENCH_CONCURRENCY:-1 32}"
eras="${BENCH_ERAS:-handshake stateless}"
repeat="${BENCH_REPEAT:-1}"
tool="${BENCH_TOOL:-echo}"
default_args='{"message":"hi"}'
tool_args="${BENCH_ARGS:-$default_args}"

if [[ -n "${BENCH_BIN:-}" ]]; then
    bin="$(realpath "$BENCH_BIN")"
else
    cargo build --release --quiet
    bin="$PWD/target/release/mcp-gateway"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN: the first match of PATTERN (grep -o) in FILE, within 10 s.
wait_for() {
    local file="$1" pattern="$2" match
    for _ in $(seq 100); do
        if match="$(grep -o -m1 -E "$pattern" "$file" 2>/dev/null)"; then
            echo "$match"
            return 0
        fi
        sleep 0.1
    done
    echo "bench.sh: timed out waiting for /$pattern/ in $file:" >&2
    cat "$file" >&2
    return 1
}

"$bin" demo-server --http 127.0.0.1:0 2>"$work/demo.log" &
demo_pid=$!
pids+=("$demo_pid")
direct_url="$(wait_for "$work/demo.log" 'http://127\.0\.0\.1:[0-9]+/mcp')"

# Without a policy the gateway denies everything: measure with the allow-all.
printf '@id("allow-all")\npermit(principal, action, resource);\n' >"$work/allow-all.cedar"
cat >"$work/gateway.toml" <<EOF
[listen]
addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"

[[backends]]
name = "demo"
transport = "streamable_http"
url = "$direct_url"

[policy]
files = ["$work/allow-all.cedar"]
EOF
# The "listening" line is INFO; calls log nothing above INFO on success.
RUST_LOG="${RUST_LOG:-warn,mcp_gateway=info}" \
    "$bin" serve --config "$work/gateway.toml" --log-format json 2>"$work/gateway.log" &
gateway_pid=$!
pids+=("$gateway_pid")
gateway_addr="$(wait_for "$work/gateway.log" '"message":"listening","addr":"127\.0\.0\.1:[0-9]+"' \
    | grep -o -E '127\.0\.0\.1:[0-9]+')"
gateway_url="http://$gateway_addr/mcp"

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
field() { grep -o -E "\"$1\":[0-9.]+" <<<"$2" | cut -d: -f2; }
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
echo "| era | concurrency | direct rps | gateway rps | ratio | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | CPU µs/call: demo, gateway | other load, CPU-s (direct/gateway) | errors, all runs (direct/gateway) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for era in $eras; do
    for concurrency in $concurrency_levels; do
        direct="" gateway="" direct_errors=0 gateway_errors=0
        for _ in $(seq "$repeat"); do
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
            'BEGIN {
                ratio = drps > 0 ? sprintf("%.0f%%", 100 * grps / drps) : "n/a";
                # Per call through the gateway, warmup included on both sides.
                cost = greq > 0 ? sprintf("%.0f, %.0f", gdemo * 1e6 / greq, ggw * 1e6 / greq) : "n/a";
                printf "| %s | %d | %.0f | %.0f | %s | %.3f ms | %.3f ms | %+.3f ms | %.3f ms | %.3f ms | %s | %.1f / %.1f | %d / %d |\n",
                    era, c, drps, grps, ratio, dp50, gp50, gp50 - dp50, dp99, gp99, cost, dother, gother, derr, gerr
            }'
    done
done
