#!/usr/bin/env python3
"""A Python SDK (mcp 2.3.0) low-level stdio server whose catalog the test
chooses: N tools listed in pages, for the gateway's aggregation tests.

    paged_server.py NAME N PAGE_SIZE            # stdio
    paged_server.py NAME N PAGE_SIZE http PORT  # http://127.0.0.1:PORT/mcp

Tools `tool_0` … `tool_{N-1}` (each takes `a` and `b`, both required) echo
"NAME:tool_i:{arguments as JSON}". Also:
  lists           how many tools/list requests this process has answered
  add_tool        adds `extra_K` and sends notifications/tools/list_changed
  slow{steps}     one progress notification per step, tagged with NAME
Cursors are the decimal offset of the page. With PAGED_EXTRA_TOOL set, one
more tool of that name is listed (to test names the gateway must refuse).
"""

import json
import os
import sys

import anyio
import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server

NAME, COUNT, PAGE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
STATE = {"lists": 0, "extra": 0}

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}


def catalog():
    names = [f"tool_{i}" for i in range(COUNT)]
    names += [f"extra_{k}" for k in range(STATE["extra"])]
    names += ["lists", "add_tool", "slow"]
    if os.environ.get("PAGED_EXTRA_TOOL"):
        names.append(os.environ["PAGED_EXTRA_TOOL"])
    return [
        types.Tool(name=n, description=f"{NAME} {n}", input_schema=SCHEMA if n.startswith(("tool_", "extra_")) else {"type": "object"})
        for n in names
    ]


async def list_tools(ctx, params):
    STATE["lists"] += 1
    tools = catalog()
    start = int(params.cursor) if params is not None and params.cursor else 0
    end = start + PAGE
    return types.ListToolsResult(
        tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None
    )


async def call_tool(ctx, params):
    args = params.arguments or {}
    if params.name == "lists":
        text = str(STATE["lists"])
    elif params.name == "add_tool":
        STATE["extra"] += 1
        await ctx.session.send_tool_list_changed()
        text = f"extra_{STATE['extra'] - 1}"
    elif params.name == "slow":
        meta = ctx.meta if isinstance(ctx.meta, dict) else {}
        token = meta.get("progress_token", meta.get("progressToken"))
        for i in range(int(args.get("steps", 3))):
            await anyio.sleep(0.05)
            if token is not None:
                await ctx.session.send_progress_notification(
                    token, i + 1, None, f"{NAME} step {i + 1}"
                )
        text = f"{NAME} done"
    else:
        text = f"{NAME}:{params.name}:{json.dumps(args, sort_keys=True)}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


server = Server(NAME, on_list_tools=list_tools, on_call_tool=call_tool)


async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options(NotificationOptions(tools_changed=True)))


if sys.argv[4:5] == ["http"]:
    import uvicorn

    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[5]), log_level="warning")
else:
    anyio.run(main)
