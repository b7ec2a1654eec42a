# Shared by the benchmark scripts (sourced, not run): the binary under test,
# a scratch directory whose processes die with the script, and starting
# gateways and waiting for the addresses they log.
#
#   BENCH_BIN=path/to/mcp-gateway   use that binary instead of a release build

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n "${BENCH_BIN:-}" ]]; then
    bin="$(realpath "$BENCH_BIN")"
else
    cargo build --release --quiet
    bin="$PWD/target/release/mcp-gateway"
fi

work="$(mktemp -d)"
pids=()
bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN: the first match of PATTERN (grep -o) in FILE, within 10 s.
wait_for() {
    local match
    for _ in $(seq 100); do
        if match="$(grep -o -m1 -E "$2" "$1" 2>/dev/null)"; then
            echo "$match"
            return 0
        fi
        sleep 0.1
    done
    echo "$(basename "$0"): timed out waiting for /$2/ in $1:" >&2
    cat "$1" >&2
    return 1
}

# start_demo NAME: a demo server over Streamable HTTP; its URL via demo_url NAME.
start_demo() {
    "$bin" demo-server --http 127.0.0.1:0 2>"$work/$1.log" &
    pids+=($!)
}
demo_url() { wait_for "$work/$1.log" 'http://127\.0\.0\.1:[0-9]+/mcp'; }

# start_gateway NAME TOML: a gateway serving the config TOML (plus loopback
# listeners); its pid in $gateway_pid, its /mcp URL via gateway_url NAME.
# Started in this shell, not a command substitution, so cleanup sees the pid.
# Without a [policy] the gateway denies everything (fail closed): a config
# that names none gets the allow-all, so what is measured is the rest.
start_gateway() {
    cat >"$work/$1.toml" <<TOML
[listen]
addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
$2
TOML
    if ! grep -q '^\[policy\]' "$work/$1.toml"; then
        printf '@id("allow-all")\npermit(principal, action, resource);\n' >"$work/allow-all.cedar"
        printf '\n[policy]\nfiles = ["%s"]\n' "$work/allow-all.cedar" >>"$work/$1.toml"
    fi
    # The "listening" line is INFO; calls log nothing above INFO on success.
    # Run from the scratch directory: the default audit log is relative.
    (cd "$work" && RUST_LOG="${RUST_LOG:-warn,mcp_gateway=info}" \
        exec "$bin" serve --config "$work/$1.toml" --log-format json 2>"$work/$1.log") &
    gateway_pid=$!
    pids+=($!)
}
gateway_url() {
    echo "http://$(wait_for "$work/$1.log" '"message":"listening","addr":"127\.0\.0\.1:[0-9]+"' \
        | grep -o -E '127\.0\.0\.1:[0-9]+')/mcp"
}

# field NAME JSON: a numeric field of a one-line JSON summary.
field() { grep -o -E "\"$1\":[0-9.]+" <<<"$2" | cut -d: -f2; }

# ab_row ERA: one markdown row comparing two setups, the calling script's
# `run_a ERA` and `run_b ERA` (each prints one `bench --json` summary), run
# alternately $repeat times; each side keeps its fastest run, errors are
# summed. Columns: era, a rps, b rps, b/a, a p50, b p50, errors (a / b).
ab_row() {
    local era="$1" best_a=0 best_b=0 p50_a="" p50_b="" err_a=0 err_b=0 r
    for _ in $(seq "$repeat"); do
        r="$(run_a "$era")"
        if awk -v a="$(field rps "$r")" -v b="$best_a" 'BEGIN { exit !(a > b) }'; then best_a="$(field rps "$r")"; p50_a="$(field p50_ms "$r")"; fi
        err_a=$((err_a + $(field errors "$r")))
        r="$(run_b "$era")"
        if awk -v a="$(field rps "$r")" -v b="$best_b" 'BEGIN { exit !(a > b) }'; then best_b="$(field rps "$r")"; p50_b="$(field p50_ms "$r")"; fi
        err_b=$((err_b + $(field errors "$r")))
    done
    awk -v era="$era" -v a="$best_a" -v b="$best_b" -v p0="$p50_a" -v p1="$p50_b" -v e0="$err_a" -v e1="$err_b" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.0f%% | %.3f ms | %.3f ms | %d / %d |\n", era, a, b, (a > 0 ? 100 * b / a : 0), p0, p1, e0, e1 }'
}
