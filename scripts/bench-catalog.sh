#!/usr/bin/env bash
# tools/list on a merged 1,000-tool catalog: direct to a Python SDK server
# with 1,000 tools (tests/interop/paged_server.py, one page), and through the
# gateway's multiplexed route in front of it plus a second, 3-tool backend
# (1,006 tools in all, the big backend's page answered from the catalog).
# Prints a markdown table.
#
#   scripts/bench-catalog.sh                     # 5 s per run (+1 s warmup)
#   BENCH_DURATION_S=3 BENCH_CONCURRENCY="1 8" scripts/bench-catalog.sh
#   BENCH_BIN=target/debug/mcp-gateway scripts/bench-catalog.sh   # no release build
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
duration_s="${BENCH_DURATION_S:-5}"
warmup_s="${BENCH_WARMUP_S:-1}"
concurrency_levels="${BENCH_CONCURRENCY:-1 8}"
eras="${BENCH_ERAS:-handshake stateless}"
python=".venv/bin/python"
script="tests/interop/paged_server.py"

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

port="$(free_port)"
"$python" "$script" big 1000 1000 http "$port" 2>"$work/big.log" &
pids+=("$!")
direct_url="http://127.0.0.1:$port/mcp"
for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
    sleep 0.1
done

start_gateway gateway "[multiplex]
catalog_ttl_s = 600

[[backends]]
name = \"big\"
transport = \"streamable_http\"
url = \"$direct_url\"

[[backends]]
name = \"small\"
transport = \"stdio\"
protocol = \"2025-11-25\"
command = [\"$PWD/$python\", \"$PWD/$script\", \"small\", \"3\", \"100\"]"
gateway_url="$(gateway_url gateway)"

run() {
    "$bin" bench --url "$1" --list --era "$2" --concurrency "$3" \
        --duration-s "$duration_s" --warmup-s "$warmup_s" --json 2>>"$work/bench.err"
}

echo "direct: $direct_url   gateway: $gateway_url" >&2
echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo
echo "| era | concurrency | direct rps | gateway rps | direct p50 | gateway p50 | direct p99 | gateway p99 | errors (direct/gateway) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for era in $eras; do
    for c in $concurrency_levels; do
        d="$(run "$direct_url" "$era" "$c")"
        g="$(run "$gateway_url" "$era" "$c")"
        printf '| %s | %s | %.0f | %.0f | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %s / %s |\n' \
            "$era" "$c" "$(field rps "$d")" "$(field rps "$g")" \
            "$(field p50_ms "$d")" "$(field p50_ms "$g")" \
            "$(field p99_ms "$d")" "$(field p99_ms "$g")" \
            "$(field errors "$d")" "$(field errors "$g")"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [[ -s "$work/bench.err" ]]; then cat "$work/bench.err" >&2; fi
