#!/usr/bin/env bash
# Throughput of tools/call through the gateway with JWT authentication on
# versus off, in the same run: two gateways in front of one demo server, one
# with `[auth] mode = "jwt"` (HS256 secret from the environment), one without.
# The bench sends the same minted bearer token on every call, so after the
# first call the gateway's verified-token cache answers.
#
#   scripts/bench-auth.sh                    # 10 s per run, concurrency 32, both eras
#   BENCH_DURATION_S=5 BENCH_REPEAT=3 scripts/bench-auth.sh
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
duration_s="${BENCH_DURATION_S:-10}"
concurrency="${BENCH_CONCURRENCY:-32}"
repeat="${BENCH_REPEAT:-1}"

start_demo demo
backend="$(demo_url demo)"

export BENCH_JWT_SECRET="bench-secret-0123456789-0123456789-abcdef"
issuer="https://idp.bench.invalid"
audience="https://gateway.bench.invalid/mcp"
backend_toml="[[backends]]
name = \"demo\"
transport = \"streamable_http\"
url = \"$backend\""
start_gateway off "$backend_toml"
start_gateway on "$backend_toml
[auth]
mode = \"jwt\"
issuer = \"$issuer\"
audience = \"$audience\"
algorithms = [\"HS256\"]
hs256_secret_env = \"BENCH_JWT_SECRET\""
off="$(gateway_url off)"
on="$(gateway_url on)"
token="$("$bin" token mint --sub bench-user --iss "$issuer" --aud "$audience" --ttl 3600 \
    --hs256-secret-env BENCH_JWT_SECRET 2>/dev/null)"

run() { # URL ERA [HEADER]
    local args=(bench --url "$1" --era "$2" --concurrency "$concurrency" --duration-s "$duration_s" \
        --warmup-s 1 --tool echo --args '{"message":"hi"}' --json)
    [[ -n "${3:-}" ]] && args+=(--header "$3")
    "$bin" "${args[@]}"
}

echo "machine: $(nproc) cores; concurrency $concurrency; ${duration_s} s per run, best of $repeat" >&2
echo "| era | auth off rps | JWT rps | ratio | auth off p50 | JWT p50 | errors (off/JWT) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
run_a() { run "$off" "$1"; }
run_b() { run "$on" "$1" "Authorization: Bearer $token"; }
for era in handshake stateless; do
    ab_row "$era"
done
