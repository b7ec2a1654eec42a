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

source "$(dirname "$0")/bench-common.sh"
duration_s="${BENCH_DURATION_S:-10}"
concurrency="${BENCH_CONCURRENCY:-32}"
repeat="${BENCH_REPEAT:-1}"

start_demo demo
backend_toml="[[backends]]
name = \"demo\"
transport = \"streamable_http\"
url = \"$(demo_url demo)\""
start_gateway off "$backend_toml
[audit]
path = \"/dev/null\"
fsync = \"never\""
start_gateway on "$backend_toml
[audit]
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

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); concurrency $concurrency; ${duration_s} s per run, best of $repeat" >&2
echo "| era | off rps | audit+limits rps | ratio | off p50 | on p50 | errors (off/on) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
run_a() { run "$off" "$1"; }
run_b() { run "$on" "$1"; }
for era in handshake stateless; do
    ab_row "$era"
done
records="$(wc -l <"$work/audit.jsonl")"
echo "audit records written by the on gateway: $records" >&2
"$bin" audit verify "$work/audit.jsonl" >&2
