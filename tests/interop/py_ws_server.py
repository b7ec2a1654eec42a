#!/usr/bin/env python3
"""A WebSocket MCP server built on the Python SDK 1.x (PyPI `mcp[ws]==1.30.0`,
in .venv-ws): the SDK's own `mcp.server.websocket.websocket_server` (subprotocol
`mcp`, one JSON-RPC message per text frame) in a small Starlette app. The SDK
makes every protocol decision; this file only declares tools.

    py_ws_server.py PORT

serves, on 127.0.0.1:PORT (Host check on, as the SDK does for loopback):
    ws://127.0.0.1:PORT/ws          WebSocket
    http://127.0.0.1:PORT/sse       the same server over legacy HTTP+SSE
                                    (POST /messages/?session_id=…), so a
                                    driver without WebSocket can go direct

Surface: the demo-full surface of py_demo_server.py (echo, delete_item,
slow_count with progress, ask_user = elicitation, summarize = sampling,
demo://readme, demo://items/{id}, prompt greet with completion of `style`)
plus tools for fault and credential tests:
    hang {}       never answers (sleeps until cancelled)
    crash {}      ends the process at once, mid-call
    headers {}    the request headers the server received, as JSON: the
                  WebSocket upgrade request's, or the SSE POST's
"""

import contextvars
import json
import os
import sys

import anyio
import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.websocket import websocket_server
from mcp.types import (
    Completion,
    PromptReference,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute

STYLES = ["formal", "pirate", "plain", "poetic"]

mcp = FastMCP("py-ws-demo", host="127.0.0.1")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(message: str) -> str:
    """Echo the message back."""
    return message


@mcp.tool(annotations=ToolAnnotations(destructiveHint=True, readOnlyHint=False))
def delete_item(id: str) -> str:
    """Delete an item (pretend)."""
    return f"deleted {id}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def slow_count(steps: int, delay_ms: int, ctx: Context) -> str:
    """Count to `steps`, reporting progress after each step."""
    for i in range(steps):
        await anyio.sleep(delay_ms / 1000)
        await ctx.report_progress(i + 1, steps)
    return f"counted to {steps}"


class Answer(BaseModel):
    answer: str


@mcp.tool()
async def ask_user(question: str, ctx: Context) -> str:
    """Ask the client's user a question (elicitation)."""
    result = await ctx.elicit(question, Answer)
    if result.action != "accept":
        return f"user chose {result.action}"
    return f"user answered {result.data.answer}"


@mcp.tool()
async def summarize(text: str, ctx: Context) -> str:
    """Summarize text with the client's model (sampling)."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=f"Summarize: {text}"))],
        max_tokens=50,
    )
    return getattr(result.content, "text", "")


@mcp.tool()
async def hang() -> str:
    """Never answer (until cancelled)."""
    await anyio.sleep_forever()
    return "unreachable"


@mcp.tool()
def crash() -> str:
    """End the server process mid-call."""
    os._exit(3)


# Set per WebSocket connection; the server's tasks inherit it.
UPGRADE_HEADERS: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("upgrade_headers", default={})


@mcp.tool()
def headers(ctx: Context) -> str:
    """The request headers this server received (JSON object, lowercase names)."""
    request = ctx.request_context.request
    if request is not None:
        seen = {k.lower(): v for k, v in request.headers.items()}
    else:
        seen = UPGRADE_HEADERS.get()
    return json.dumps(seen, sort_keys=True)


@mcp.resource("demo://readme", mime_type="text/markdown")
def readme() -> str:
    return "# demo\n\nA demo resource.\n"


@mcp.resource("demo://items/{id}", mime_type="application/json")
def item(id: str) -> str:
    return '{"id": "%s"}' % id


@mcp.prompt()
def greet(name: str, style: str = "plain") -> str:
    """Greet someone in a style."""
    return f"Greet {name} in a {style} style."


@mcp.completion()
async def complete(ref, argument, context):
    if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "style":
        return Completion(values=[s for s in STYLES if s.startswith(argument.value)])
    return None


class WebSocketApp:
    """A raw ASGI app (an instance, so Starlette passes scope/receive/send)."""

    async def __call__(self, scope, receive, send):
        security = mcp.settings.transport_security
        UPGRADE_HEADERS.set({k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])})
        try:
            async with websocket_server(scope, receive, send, security_settings=security) as (read, write):
                await mcp._mcp_server.run(read, write, mcp._mcp_server.create_initialization_options())
        except ValueError:
            pass  # handshake refused by the Host/Origin check (already answered)


app = Starlette(routes=[WebSocketRoute("/ws", WebSocketApp()), Mount("/", app=mcp.sse_app())])

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: py_ws_server.py PORT")
    port = int(sys.argv[1])
    print(f"py_ws_server listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")
