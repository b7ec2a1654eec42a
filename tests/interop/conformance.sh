#!/usr/bin/env bash
# Run the MCP conformance suite (server mode) against URL and leave in OUTDIR:
#   output.txt     the runner's console output (per-scenario blocks + SUMMARY)
#   exit-code      the runner's exit code (1 whenever any check fails)
#   raw/           the runner's per-scenario directories (server-<scenario>-<time>/checks.json)
#   checks.json    every check, sorted: [{"scenario","id","status","errorMessage"?}]
#   statuses.json  {"<scenario>/<check id>": "SUCCESS"|"FAILURE"|...}
#
# The suite's exit code is NOT the verdict: server-everything itself fails 19 of
# 32 checks (its tool names are not the suite's fixtures). Tests compare
# statuses.json taken directly against a server with the one taken through the
# gateway. This script exits non-zero only when the runner produced no checks.
#
#   conformance.sh URL OUTDIR [extra runner args, e.g. --scenario tools-list | --suite all]
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 URL OUTDIR [conformance server args...]" >&2
  exit 64
fi
here=$(cd "$(dirname "$0")" && pwd)
url=$1
out=$2
shift 2
node22="$here/node22/node_modules/node/bin/node"
runner="$here/node22/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -x "$node22" ] || [ ! -f "$runner" ]; then
  echo "$0: $node22 or $runner missing; run scripts/install-test-deps.sh" >&2
  exit 69
fi

rm -rf "$out"
mkdir -p "$out/raw"
out=$(cd "$out" && pwd)
# cwd = OUTDIR so nothing the runner writes lands in the repository.
(cd "$out" && "$node22" "$runner" server --url "$url" -o "$out/raw" "$@") >"$out/output.txt" 2>&1
rc=$?
echo "$rc" >"$out/exit-code"

"$node22" --input-type=module - "$out" <<'JS'
import { readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
const out = process.argv[2];
const checks = [];
for (const dir of readdirSync(join(out, "raw"))) {
  const file = join(out, "raw", dir, "checks.json");
  if (!existsSync(file)) continue;
  // server-<scenario>-<ISO time with dashes>
  const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(dir);
  const scenario = m ? m[1] : dir;
  for (const c of JSON.parse(readFileSync(file, "utf8"))) {
    const e = { scenario, id: c.id, status: c.status };
    if (c.errorMessage) e.errorMessage = c.errorMessage;
    checks.push(e);
  }
}
const key = (c) => `${c.scenario}/${c.id}`;
checks.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
const statuses = Object.fromEntries(checks.map((c) => [key(c), c.status]));
writeFileSync(join(out, "checks.json"), JSON.stringify(checks, null, 2) + "\n");
writeFileSync(join(out, "statuses.json"), JSON.stringify(statuses, null, 2) + "\n");
const passed = checks.filter((c) => c.status === "SUCCESS").length;
console.log(`conformance: ${checks.length} checks, ${passed} SUCCESS, ${checks.length - passed} other`);
if (checks.length === 0) process.exit(1);
JS
merge_rc=$?
if [ "$merge_rc" -ne 0 ]; then
  echo "$0: the runner (exit $rc) produced no checks; its output:" >&2
  cat "$out/output.txt" >&2
  exit 1
fi
sed -n '/=== SUMMARY ===/,$p' "$out/output.txt"
