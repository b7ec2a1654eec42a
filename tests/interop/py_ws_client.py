#!/usr/bin/env python3
"""Python MCP SDK 1.30 (PyPI `mcp[ws]==1.30.0`, the last release with a
WebSocket client) driver for the interop tests. Runs in .venv-ws.

    py_ws_client.py MODE TARGET SCENARIO [options]

Same command line and JSON output as py_client.py (which drives SDK 2.x), so
a run through the gateway compares equal to a run straight at the server with
this same driver.

MODE
    legacy             initialize offering 2025-11-25 (SDK 1.x is handshake only)
    legacy-VERSION     initialize offering VERSION
TARGET
    ws:ws://…/ws       WebSocket, subprotocol "mcp" (`websocket_client`; it
                       takes no headers)
    sse:http(s)://…    legacy HTTP+SSE
    http(s)://…/mcp    Streamable HTTP
    stdio:CMD ARGS…    spawn CMD and speak stdio
SCENARIO
    tools | demo-full | everything   (see py_client.py)
OPTIONS
    --header 'K: V', --call NAME, --args JSON, --expect-protocol V,
    --prefix P, --timeout S          (see py_client.py)

Exit codes: 0 ok, 2 connect failed ({"connect_error"}), 3 protocol differs
from --expect-protocol, 1 crash.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
import warnings
from contextlib import AsyncExitStack
from typing import Any

import anyio

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.client.websocket import websocket_client
from mcp.shared.exceptions import McpError

warnings.filterwarnings("ignore", category=DeprecationWarning)

VOLATILE_KEYS = {"_meta", "ttlMs", "cacheScope", "resultType", "nextCursor"}


def norm(value: Any) -> Any:
    """Wire JSON without the volatile bits, integral floats as ints."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def describe(err: BaseException) -> str:
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    return f"{type(err).__name__}: {err}"


def error_json(err: McpError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": err.error.code, "message": err.error.message}
    if err.error.data is not None:
        out["data"] = norm(err.error.data)
    return {"error": out}


async def step(coro: Any) -> Any:
    try:
        return norm(await coro)
    except McpError as err:
        return error_json(err)


class Driver:
    def __init__(self, session: ClientSession, prefix: str) -> None:
        self.c = session
        self.prefix = prefix
        self.elicitations: list[dict[str, Any]] = []
        self.samplings: list[dict[str, Any]] = []
        self.tool_schemas: dict[str, dict[str, Any]] = {}

    def strip(self, name: str) -> str:
        return name[len(self.prefix) :] if self.prefix and name.startswith(self.prefix) else name

    async def list_all(self, what: str) -> list[Any]:
        fetch, key = {
            "tools": (self.c.list_tools, "tools"),
            "resources": (self.c.list_resources, "resources"),
            "templates": (self.c.list_resource_templates, "resourceTemplates"),
            "prompts": (self.c.list_prompts, "prompts"),
        }[what]
        items: list[Any] = []
        cursor = None
        for _ in range(100):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await fetch(params=params)
            items.extend(getattr(page, key))
            cursor = page.nextCursor
            if not cursor:
                break
        return items

    async def tools(self) -> Any:
        try:
            tools = await self.list_all("tools")
        except McpError as err:
            return error_json(err)
        out = []
        for t in tools:
            d = norm(t)
            d["name"] = self.strip(t.name)
            self.tool_schemas[d["name"]] = d.get("inputSchema") or {}
            out.append({k: d[k] for k in ("name", "title", "description", "annotations", "inputSchema", "outputSchema") if k in d})
        return sorted(out, key=lambda d: d["name"])

    async def sorted_list(self, what: str, key: str, rename: bool = False) -> Any:
        try:
            out = []
            for item in await self.list_all(what):
                d = norm(item)
                if rename:
                    d["name"] = self.strip(item.name)
                out.append(d)
            return sorted(out, key=lambda d: d[key])
        except McpError as err:
            return error_json(err)

    def coerce(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        props = (self.tool_schemas.get(tool) or {}).get("properties") or {}
        out = dict(args)
        for k, v in args.items():
            want = (props.get(k) or {}).get("type")
            if want in ("integer", "number") and isinstance(v, str) and v.lstrip("-").isdigit():
                out[k] = int(v)
            elif want == "string" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = str(v)
        return out

    async def call(self, tool: str, args: dict[str, Any], with_progress: bool = False) -> Any:
        progress: list[dict[str, Any]] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            entry: dict[str, Any] = {"progress": p}
            if total is not None:
                entry["total"] = total
            progress.append(norm(entry))

        result = await step(
            self.c.call_tool(
                self.prefix + tool,
                self.coerce(tool, args),
                progress_callback=on_progress if with_progress else None,
            )
        )
        if with_progress:
            return {"result": result, "progress": progress}
        return result

    async def read(self, uri: str) -> Any:
        return await step(self.c.read_resource(uri))

    async def get_prompt(self, name: str, args: dict[str, str] | None = None) -> Any:
        return await step(self.c.get_prompt(self.prefix + name, args))

    async def complete_prompt(self, prompt: str, arg: str, value: str) -> Any:
        ref = types.PromptReference(type="ref/prompt", name=self.prefix + prompt)
        res = await step(self.c.complete(ref, {"name": arg, "value": value}))
        return res.get("completion", res) if isinstance(res, dict) else res

    async def on_elicit(self, ctx: Any, params: Any) -> types.ElicitResult:
        self.elicitations.append({"message": params.message})
        return types.ElicitResult(action="accept", content={"answer": "blue"})

    async def on_sample(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        texts = []
        for m in params.messages:
            content = m.content if isinstance(m.content, list) else [m.content]
            texts.extend(getattr(c, "text", None) for c in content)
        self.samplings.append({"messages": [t for t in texts if t is not None], "maxTokens": params.maxTokens})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="short"),
            model="interop-test-model",
            stopReason="endTurn",
        )


async def scenario_tools(d: Driver, opts: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tools": await d.tools()}
    calls = []
    for name, args in zip(opts.call, opts.args + ["{}"] * (len(opts.call) - len(opts.args))):
        calls.append({"name": name, "result": await d.call(name, json.loads(args))})
    if calls:
        out["calls"] = calls
    return out


async def scenario_demo_full(d: Driver, opts: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tools": await d.tools()}
    out["echo"] = await d.call("echo", {"message": "hello"})
    out["delete_item"] = await d.call("delete_item", {"id": "42"})
    out["slow_count"] = await d.call("slow_count", {"steps": 3, "delay_ms": 10}, with_progress=True)
    out["ask_user"] = await d.call("ask_user", {"question": "favourite colour?"})
    out["summarize"] = await d.call("summarize", {"text": "a long text that needs summarizing"})
    out["elicitations"] = d.elicitations
    out["samplings"] = d.samplings
    out["resources"] = await d.sorted_list("resources", "uri")
    out["readme"] = await d.read("demo://readme")
    out["item_42"] = await d.read("demo://items/42")
    out["templates"] = await d.sorted_list("templates", "uriTemplate")
    out["prompts"] = await d.sorted_list("prompts", "name", rename=True)
    out["greet"] = await d.get_prompt("greet", {"name": "Ada"})
    out["complete"] = await d.complete_prompt("greet", "style", "p")
    return out


async def scenario_everything(d: Driver, opts: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tools": await d.tools()}
    out["echo"] = await d.call("echo", {"message": "hello"})
    out["get_sum"] = await d.call("get-sum", {"a": 2, "b": 3})
    out["resources"] = await d.sorted_list("resources", "uri")
    out["features_md"] = await d.read("demo://resource/static/document/features.md")
    out["templates"] = await d.sorted_list("templates", "uriTemplate")
    out["prompts"] = await d.sorted_list("prompts", "name", rename=True)
    out["simple_prompt"] = await d.get_prompt("simple-prompt")
    out["args_prompt"] = await d.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
    out["complete"] = await d.complete_prompt("completable-prompt", "department", "E")
    out["long_running"] = await d.call(
        "trigger-long-running-operation", {"duration": 1, "steps": 4}, with_progress=True
    )
    return out


SCENARIOS = {
    "tools": scenario_tools,
    "demo-full": scenario_demo_full,
    "everything": scenario_everything,
}


def parse_headers(raw: list[str]) -> dict[str, str]:
    headers = {}
    for h in raw:
        k, sep, v = h.partition(":")
        if not sep:
            raise SystemExit(f"--header {h!r}: expected K:V")
        headers[k.strip()] = v.strip()
    return headers


def transport(opts: argparse.Namespace) -> Any:
    target = opts.target
    if target.startswith("ws:"):
        if opts.header:
            raise SystemExit("ws: targets take no --header (websocket_client has no headers)")
        return websocket_client(target[len("ws:") :])
    if target.startswith("sse:"):
        return sse_client(target[len("sse:") :], headers=parse_headers(opts.header) or None)
    if target.startswith("stdio:"):
        argv = shlex.split(target[len("stdio:") :])
        if not argv:
            raise SystemExit("stdio: target needs a command")
        return stdio_client(StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ)))
    if target.startswith(("http://", "https://")):
        return streamablehttp_client(target, headers=parse_headers(opts.header) or None)
    raise SystemExit(f"target {target!r}: expected ws:ws://…, sse:http(s)://…, http(s)://… or stdio:CMD")


async def run(opts: argparse.Namespace) -> int:
    if opts.mode.startswith("legacy-"):
        types.LATEST_PROTOCOL_VERSION = opts.mode[len("legacy-") :]
    elif opts.mode != "legacy":
        raise SystemExit(f"mode {opts.mode}: SDK 1.x speaks only the handshake era (legacy, legacy-VERSION)")
    result: dict[str, Any] = {"scenario": opts.scenario}
    box: list[Driver] = []
    callbacks: dict[str, Any] = {}
    if opts.scenario == "demo-full":
        callbacks = {
            "elicitation_callback": lambda ctx, p: box[0].on_elicit(ctx, p),
            "sampling_callback": lambda ctx, p: box[0].on_sample(ctx, p),
        }
    code = 0
    with anyio.fail_after(opts.timeout):
        async with AsyncExitStack() as stack:
            try:
                streams = await stack.enter_async_context(transport(opts))
                session = await stack.enter_async_context(
                    ClientSession(
                        streams[0],
                        streams[1],
                        client_info=types.Implementation(name="interop-py-ws", version="0"),
                        **callbacks,
                    )
                )
                init = await session.initialize()
            except BaseException as err:  # noqa: BLE001 - report any connect failure as data
                traceback.print_exc(file=sys.stderr)
                result["connect_error"] = describe(err)
                print(json.dumps(result, sort_keys=True))
                return 2
            driver = Driver(session, opts.prefix)
            box.append(driver)
            if opts.expect_protocol:
                result["protocol"] = init.protocolVersion
                if init.protocolVersion != opts.expect_protocol:
                    print(f"negotiated {init.protocolVersion}, expected {opts.expect_protocol}", file=sys.stderr)
                    code = 3
            result.update(await SCENARIOS[opts.scenario](driver, opts))
    print(json.dumps(result, sort_keys=True))
    return code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode")
    ap.add_argument("target")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--call", action="append", default=[])
    ap.add_argument("--args", action="append", default=[])
    ap.add_argument("--expect-protocol")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--timeout", type=float, default=90)
    opts = ap.parse_args()
    sys.exit(anyio.run(run, opts))


if __name__ == "__main__":
    main()
