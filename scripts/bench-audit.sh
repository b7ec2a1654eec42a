#!/usr/bin/env bash
# Throughput of tools/call through the gateway with audit and rate limits
# on versus off, in the same run: two gateways in front of one demo server.
# "off": the audit log goes to /dev/null without syncing and no limit is
# configured (records are still built and hashed: the gateway has no switch
# to drop them). "on": audit to a file with `fsync = "batch"`, a
# per-principal bucket, a per-agent bucket and a rule with a bucket per
# tool, all far above the load so that every call is checked and admitted.
#
#   scripts/bench-audit.sh                   # 10 s per run, concurrency 32, both eras
#   BENCH_DURATION_S=5 BENCH_REPEAT=3 scripts/bench-audit.sh
set -euo pipefail

cd "$(dirname "$0")/.."
duration_s="${BENCH_DURATION_S:-10}"
concurrency="${BENCH_CONCURRENCY:-32}"
repeat="${BENCH_REPEAT:-1}"
if [[ -n "${BENCH_BIN:-}" ]]; then
    bin="$(realpath "$BENCH_BIN")"
else
    cargo build --release --quiet
    bin="$PWD/target/release/mcp-gateway"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() {
    local match
    for _ in $(seq 100); do
        if match="$(grep -o -m1 -E "$2" "$1" 2>/dev/null)"; then echo "$match"; return 0; fi
        sleep 0.1
    done
    echo "bench-audit.sh: timed out waiting for /$2/ in $1" >&2; cat "$1" >&2; return 1
}

"$bin" demo-server --http 127.0.0.1:0 2>"$work/demo.log" &
pids+=($!)
backend="$(wait_for "$work/demo.log" 'http://127\.0\.0\.1:[0-9]+/mcp')"

start_gateway() { # NAME EXTRA_TOML
    cat >"$work/$1.toml" <<TOML
[listen]
addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
$2
[[backends]]
name = "demo"
transport = "streamable_http"
url = "$backend"
TOML
    (cd "$work" && RUST_LOG=warn,mcp_gateway=info exec "$bin" serve --config "$work/$1.toml" --log-format json 2>"$work/$1.log") &
    pids+=($!)
}
# Started in this shell (not a command substitution) so cleanup sees the pids.
gateway_url() { echo "http://$(wait_for "$work/$1.log" '"addr":"127\.0\.0\.1:[0-9]+"' | grep -o -E '127\.0\.0\.1:[0-9]+')/mcp"; }
start_gateway off "[audit]
path = \"/dev/null\"
fsync = \"never\""
start_gateway on "[audit]
path = \"$work/audit.jsonl\"
fsync = \"batch\"
[limits]
per_principal = { per_second = 1000000, burst = 1000000 }
per_agent = { per_second = 1000000, burst = 1000000 }
[[limits.rules]]
match = { tool = \"*\" }
rate = { per_second = 1000000, burst = 1000000 }"
off="$(gateway_url off)"
on="$(gateway_url on)"

run() { # URL ERA
    "$bin" bench --url "$1" --era "$2" --concurrency "$concurrency" --duration-s "$duration_s" \
        --warmup-s 1 --tool echo --args '{"message":"hi"}' --json
}
field() { grep -o -E "\"$1\":[0-9.]+" <<<"$2" | cut -d: -f2; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); concurrency $concurrency; ${duration_s} s per run, best of $repeat" >&2
echo "| era | off rps | audit+limits rps | ratio | off p50 | on p50 | errors (off/on) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for era in handshake stateless; do
    best_off=0 best_on=0 p50_off="" p50_on="" err_off=0 err_on=0
    for _ in $(seq "$repeat"); do
        r="$(run "$off" "$era")"
        if awk -v a="$(field rps "$r")" -v b="$best_off" 'BEGIN { exit !(a > b) }'; then best_off="$(field rps "$r")"; p50_off="$(field p50_ms "$r")"; fi
        err_off=$((err_off + $(field errors "$r")))
        r="$(run "$on" "$era")"
        if awk -v a="$(field rps "$r")" -v b="$best_on" 'BEGIN { exit !(a > b) }'; then best_on="$(field rps "$r")"; p50_on="$(field p50_ms "$r")"; fi
        err_on=$((err_on + $(field errors "$r")))
    done
    awk -v era="$era" -v off="$best_off" -v on="$best_on" -v p0="$p50_off" -v p1="$p50_on" -v e0="$err_off" -v e1="$err_on" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.0f%% | %.3f ms | %.3f ms | %d / %d |\n", era, off, on, (off > 0 ? 100 * on / off : 0), p0, p1, e0, e1 }'
done
records="$(wc -l <"$work/audit.jsonl")"
echo "audit records written by the on gateway: $records" >&2
"$bin" audit verify "$work/audit.jsonl" >&2
