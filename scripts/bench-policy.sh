#!/usr/bin/env bash
# What Cedar authorization costs: the same tools/call through two gateways in
# front of one demo server, one with the allow-all policy and one with 200
# policies, alternating runs; then the in-process decision time of each set
# (`mcp-gateway policy bench`). Prints markdown tables for BENCHMARKS.md.
#
#   scripts/bench-policy.sh                     # 5 s per run (+1 s warmup), best of 3
#   BENCH_DURATION_S=3 BENCH_REPEAT=1 scripts/bench-policy.sh
#   BENCH_BIN=target/release/mcp-gateway scripts/bench-policy.sh   # no build
#
# Every process this script starts is killed when it exits.
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
duration_s="${BENCH_DURATION_S:-5}"
warmup_s="${BENCH_WARMUP_S:-1}"
concurrency_levels="${BENCH_CONCURRENCY:-1 32}"
eras="${BENCH_ERAS:-handshake stateless}"
repeat="${BENCH_REPEAT:-3}"
n_policies="${BENCH_POLICIES:-200}"

# The allow-all set, and a set of $n_policies: the per-action permits of a
# real deployment, half per-tool forbids scoped to one tool each (Cedar skips
# them on the scope), half conditions every tools/call evaluates.
printf '@id("allow-all")\npermit(principal, action, resource);\n' >"$work/allow-all.cedar"
{
    cat <<'EOF'
@id("connect-list-other")
permit (principal, action in [Mcp::Action::"connect", Mcp::Action::"tools/list",
  Mcp::Action::"prompts/list", Mcp::Action::"resources/list",
  Mcp::Action::"resources/templates/list", Mcp::Action::"other"], resource);
@id("read-only-tools")
permit (principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
when { resource.read_only || principal.scopes.contains("tools:destructive") };
EOF
    for i in $(seq 3 "$n_policies"); do
        if ((i % 2)); then
            printf '@id("tool-scope-%d")\nforbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"demo__tool%d")\nunless { principal.scopes.contains("tool%d:call") };\n' "$i" "$i" "$i"
        else
            printf '@id("name-rule-%d")\nforbid (principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)\nwhen { resource.name == "tool%d" && !principal.scopes.contains("tool%d:call") };\n' "$i" "$i" "$i"
        fi
    done
} >"$work/many.cedar"

start_demo demo
demo_url="$(demo_url demo)"
backend_toml="[[backends]]
name = \"demo\"
transport = \"streamable_http\"
url = \"$demo_url\""
start_gateway allow "$backend_toml
[policy]
files = [\"$work/allow-all.cedar\"]"
start_gateway many "$backend_toml
[policy]
files = [\"$work/many.cedar\"]"
allow_url="$(gateway_url allow)"
many_url="$(gateway_url many)"

run() {
    "$bin" bench --url "$1" --tool echo --era "$2" --concurrency "$3" \
        --duration-s "$duration_s" --warmup-s "$warmup_s" --args '{"message":"hi"}' --json
}
best() {
    if [[ -z "$1" ]] || awk -v a="$(field rps "$1")" -v b="$(field rps "$2")" 'BEGIN { exit !(b > a) }'; then
        echo "$2"
    else
        echo "$1"
    fi
}

echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| era | concurrency | allow-all rps | $n_policies policies rps | ratio | allow-all p50 | $n_policies policies p50 | errors (allow-all / $n_policies) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for era in $eras; do
    for c in $concurrency_levels; do
        a="" m="" a_err=0 m_err=0
        for _ in $(seq "$repeat"); do
            r="$(run "$allow_url" "$era" "$c")"
            a="$(best "$a" "$r")"
            a_err=$((a_err + $(field errors "$r")))
            r="$(run "$many_url" "$era" "$c")"
            m="$(best "$m" "$r")"
            m_err=$((m_err + $(field errors "$r")))
        done
        awk -v era="$era" -v c="$c" -v arps="$(field rps "$a")" -v mrps="$(field rps "$m")" \
            -v ap50="$(field p50_ms "$a")" -v mp50="$(field p50_ms "$m")" -v ae="$a_err" -v me="$m_err" \
            'BEGIN { printf "| %s | %d | %.0f | %.0f | %.0f%% | %.3f ms | %.3f ms | %d / %d |\n",
                era, c, arps, mrps, (arps > 0 ? 100 * mrps / arps : 0), ap50, mp50, ae, me }'
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo
echo "In process (\`mcp-gateway policy bench\`, tools/call of a read-only tool, 20000 decisions):"
echo
for set in allow many; do
    echo "- $set: $("$bin" policy bench --config "$work/$set.toml" --backend demo --tool echo)"
done
