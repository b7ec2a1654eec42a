#!/usr/bin/env python3
"""A deliberately small MCP stdio server (handshake era, no SDK) for fault tests.

Tools:
  echo {message}      answers at once with the message
  crash {}            exits the process without answering (a backend that dies mid-call)
  hang {}             never answers (a backend that times out); cancellable
  cancelled_ids {}    the request ids this process saw in notifications/cancelled
  pid {}              this process's pid (tells processes apart for isolation tests)
  ask_then_cancel {}  sends the client an elicitation/create, cancels it at once
                      (notifications/cancelled), then answers the call
"""
import json
import os
import sys

cancelled = []
TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in ("crash", "hang", "cancelled_ids", "pid", "ask_then_cancel")]
# echo mirrors its argument into a routing header (SEP-2243 x-mcp-header).
TOOLS.insert(0, {"name": "echo", "inputSchema": {"type": "object", "properties": {
    "message": {"type": "string", "x-mcp-header": "Message"}}}})


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def text(s):
    return {"content": [{"type": "text", "text": s}], "isError": False}


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, mid = msg.get("method"), msg.get("id")
    params = msg.get("params") or {}
    if method == "notifications/cancelled":
        cancelled.append(params.get("requestId"))
        continue
    if mid is None or method is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}}, "serverInfo": {"name": "fault-server", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    elif method == "tools/call":
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "echo":
            send({"jsonrpc": "2.0", "id": mid, "result": text(str(args.get("message", "")))})
        elif name == "crash":
            os._exit(3)
        elif name == "hang":
            pass
        elif name == "cancelled_ids":
            send({"jsonrpc": "2.0", "id": mid, "result": text(json.dumps(cancelled))})
        elif name == "ask_then_cancel":
            send({"jsonrpc": "2.0", "id": "srv-1", "method": "elicitation/create",
                  "params": {"message": "never mind", "requestedSchema": {"type": "object", "properties": {}}}})
            send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "srv-1"}})
            send({"jsonrpc": "2.0", "id": mid, "result": text("asked and cancelled")})
        elif name == "pid":
            send({"jsonrpc": "2.0", "id": mid, "result": text(str(os.getpid()))})
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown tool"}})
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "method not found"}})
