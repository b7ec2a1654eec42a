#!/usr/bin/env python3
"""A minimal Streamable HTTP MCP server (handshake era, stdlib only) that shows
what credentials reach a backend.

Binds 127.0.0.1:0 and prints `echo-headers listening on http://127.0.0.1:PORT/mcp`
to stderr. Every request is logged to stderr as one line
`REQ {"method": ..., "authorization": ...}`, so a test can count the calls that
reached it (none, for a refused credential).

Tools:
  echo_headers {}     the HTTP headers of this request, as a JSON text
  echo {message}      the message
"""
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOLS = [
    {"name": "echo_headers", "inputSchema": {"type": "object"}},
    {"name": "echo", "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}},
]


def text(s):
    return {"content": [{"type": "text", "text": s}], "isError": False}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(405)

    def do_DELETE(self):
        self.reply(200)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            msg = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.reply(400)
        method, mid = msg.get("method"), msg.get("id")
        params = msg.get("params") or {}
        line = {"method": method, "authorization": self.headers.get("Authorization")}
        if method == "tools/call":
            line["tool"] = params.get("name")
        sys.stderr.write("REQ " + json.dumps(line) + "\n")
        sys.stderr.flush()
        if mid is None:
            return self.reply(202)
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "echo-headers", "version": "1"},
            }
            return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": result},
                              {"Mcp-Session-Id": uuid.uuid4().hex})
        if method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "ping":
            result = {}
        elif method == "tools/call" and params.get("name") == "echo_headers":
            headers = {k.lower(): v for k, v in self.headers.items()}
            result = text(json.dumps(headers))
        elif method == "tools/call" and params.get("name") == "echo":
            result = text(str((params.get("arguments") or {}).get("message", "")))
        else:
            error = {"code": -32601, "message": "method not found: %s" % method}
            return self.reply(200, {"jsonrpc": "2.0", "id": mid, "error": error})
        self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": result})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    sys.stderr.write("echo-headers listening on http://127.0.0.1:%d/mcp\n" % port)
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
