#!/usr/bin/env bash
# MCP Inspector CLI (@modelcontextprotocol/inspector 2.12.0, under the Node 22
# from tests/interop/node22) against TARGET; prints the method's JSON result.
#
#   inspector.sh URL METHOD [inspector args...]
#   inspector.sh http://127.0.0.1:8080/mcp tools/list
#   inspector.sh http://127.0.0.1:8080/mcp tools/call --tool-name get-sum --tool-arg a=1 b=2
#   inspector.sh http://127.0.0.1:8080/mcp tools/list --header "Authorization: Bearer T"
#   inspector.sh http://127.0.0.1:8080/mcp tools/list --protocol-era modern   # legacy|auto|modern
#
# The transport follows the URL: /mcp is Streamable HTTP, /sse legacy SSE.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 URL METHOD [inspector args...]" >&2
  exit 64
fi
here=$(cd "$(dirname "$0")" && pwd)
url=$1
method=$2
shift 2
node22="$here/node22/node_modules/node/bin/node"
cli="$here/node22/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
if [ ! -x "$node22" ] || [ ! -f "$cli" ]; then
  echo "$0: $node22 or $cli missing; run scripts/install-test-deps.sh" >&2
  exit 69
fi
# The Inspector keeps a catalog and storage under $HOME; keep them out of the real one.
export HOME="${INSPECTOR_HOME:-${TMPDIR:-/tmp}/mcp-gateway-inspector-home}"
mkdir -p "$HOME"
exec "$node22" "$cli" --cli -q "$url" --method "$method" "$@"
