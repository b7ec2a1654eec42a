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

cd "$(dirname "$0")/.."
duration_s="${BENCH_DURATION_S:-5}"
warmup_s="${BENCH_WARMUP_S:-1}"
concurrency_levels="${BENCH_CONCURRENCY:-1 8}"
eras="${BENCH_ERAS:-handshake stateless}"
python=".venv/bin/python"
script="tests/interop/paged_server.py"

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

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

port="$(free_port)"
"$python" "$script" big 1000 1000 http "$port" 2>"$work/big.log" &
pids+=("$!")
direct_url="http://127.0.0.1:$port/mcp"
for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
    sleep 0.1
done

cat >"$work/gateway.toml" <<EOF
[listen]
addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"

[multiplex]
catalog_ttl_s = 600

[[backends]]
name = "big"
transport = "streamable_http"
url = "$direct_url"

[[backends]]
name = "small"
transport = "stdio"
protocol = "2025-11-25"
command = ["$PWD/$python", "$PWD/$script", "small", "3", "100"]
EOF
RUST_LOG="${RUST_LOG:-warn,mcp_gateway=info}" \
    "$bin" serve --config "$work/gateway.toml" --log-format json 2>"$work/gateway.log" &
pids+=("$!")
gateway_addr=""
for _ in $(seq 100); do
    if gateway_addr="$(grep -o -m1 -E '"message":"listening","addr":"127\.0\.0\.1:[0-9]+"' "$work/gateway.log" | grep -o -E '127\.0\.0\.1:[0-9]+')"; then break; fi
    sleep 0.1
done
[[ -n "$gateway_addr" ]] || { cat "$work/gateway.log" >&2; exit 1; }
gateway_url="http://$gateway_addr/mcp"

field() { grep -o -E "\"$1\":[0-9.]+" <<<"$2" | cut -d: -f2; }
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
