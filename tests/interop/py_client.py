#!/usr/bin/env python3
"""Python MCP SDK (PyPI `mcp` 2.3.0) client driver for the interop tests.

    py_client.py MODE TARGET SCENARIO [options]

MODE
    auto               discover 2026-07-28, fall back to the 2025-11-25 handshake
    legacy             initialize handshake offering 2025-11-25
    legacy-VERSION     handshake offering VERSION (e.g. legacy-2025-03-26): the SDK
                       has no public knob, so we patch LATEST_HANDSHAKE_VERSION
    2026-07-28         adopt the stateless revision without a discover probe
TARGET
    http(s)://…/mcp    Streamable HTTP
    sse:http(s)://…    legacy HTTP+SSE (GET stream URL, e.g. …/sse)
    stdio:CMD ARGS…    spawn CMD (split with shlex) and speak stdio
SCENARIO
    tools      list tools; `--call NAME --args JSON` (repeatable) calls tools
    demo-full  every feature of `mcp-gateway demo-server`
    everything the same tour for @modelcontextprotocol/server-everything
    cancel     start a slow tool, cancel it after its first progress, then
               prove the session still works with `echo`
OPTIONS
    --header 'K: V'           extra HTTP header (repeatable; `K:V` works too)
    --expect-protocol V       put the negotiated version in the JSON as
                              "protocol"; exit 3 when it is not V
    --prefix P                tools/prompts are named P+name on this target
                              (the gateway's multiplexed route): call P+name,
                              strip P from listed names
    --timeout S               overall deadline (default 90)

Output: ONE JSON object on stdout, normalized so that the same scenario run
directly against a server and through the gateway compares equal (volatile
`_meta`, ttlMs, cacheScope, resultType, nextCursor removed; lists sorted;
integral floats printed as integers so Python and TypeScript output match).
A JSON-RPC error from a step becomes {"error": {"code", "message", "data"}} in
place of that step's result; a failure to connect exits 2 with
{"connect_error": "..."}. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
from typing import Any

import anyio

import mcp.client.session as client_session
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

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
    """Leaf causes of an (anyio) exception group, which wraps every transport error."""
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    return f"{type(err).__name__}: {err}"


def error_json(err: MCPError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.data is not None:
        out["data"] = norm(err.data)
    return {"error": out}


async def step(coro: Any) -> Any:
    """Run one MCP request; a JSON-RPC error is data, not a crash."""
    try:
        return norm(await coro)
    except MCPError as err:
        return error_json(err)


class Driver:
    def __init__(self, client: Client, prefix: str) -> None:
        self.c = client
        self.prefix = prefix
        self.progress: list[dict[str, Any]] = []
        self.elicitations: list[dict[str, Any]] = []
        self.samplings: list[dict[str, Any]] = []
        self.tool_schemas: dict[str, dict[str, Any]] = {}

    # --- helpers ---------------------------------------------------------

    def strip(self, name: str) -> str:
        return name[len(self.prefix) :] if self.prefix and name.startswith(self.prefix) else name

    async def list_all(self, method: str) -> list[Any]:
        fetch = {
            "tools": (self.c.list_tools, "tools"),
            "resources": (self.c.list_resources, "resources"),
            "templates": (self.c.list_resource_templates, "resource_templates"),
            "prompts": (self.c.list_prompts, "prompts"),
        }[method]
        items: list[Any] = []
        cursor = None
        for _ in range(100):
            page = await fetch[0](cursor=cursor)
            items.extend(getattr(page, fetch[1]))
            cursor = page.next_cursor
            if not cursor:
                break
        return items

    async def tools(self) -> Any:
        try:
            tools = await self.list_all("tools")
        except MCPError as err:
            return error_json(err)
        out = []
        for t in tools:
            d = norm(t)
            d["name"] = self.strip(t.name)
            self.tool_schemas[d["name"]] = d.get("inputSchema") or {}
            out.append({k: d[k] for k in ("name", "title", "description", "annotations", "inputSchema", "outputSchema") if k in d})
        return sorted(out, key=lambda d: d["name"])

    async def resources(self) -> Any:
        try:
            return sorted((norm(r) for r in await self.list_all("resources")), key=lambda d: d["uri"])
        except MCPError as err:
            return error_json(err)

    async def templates(self) -> Any:
        try:
            return sorted((norm(r) for r in await self.list_all("templates")), key=lambda d: d["uriTemplate"])
        except MCPError as err:
            return error_json(err)

    async def prompts(self) -> Any:
        try:
            out = []
            for p in await self.list_all("prompts"):
                d = norm(p)
                d["name"] = self.strip(p.name)
                out.append(d)
            return sorted(out, key=lambda d: d["name"])
        except MCPError as err:
            return error_json(err)

    def coerce(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send numbers as the listed schema wants them (an id may be a string or an integer)."""
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

    # --- callbacks -------------------------------------------------------

    async def on_elicit(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicitations.append({"message": params.message})
        return types.ElicitResult(action="accept", content={"answer": "blue"})

    async def on_sample(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        texts = []
        for m in params.messages:
            content = m.content if isinstance(m.content, list) else [m.content]
            texts.extend(getattr(c, "text", None) for c in content)
        self.samplings.append({"messages": [t for t in texts if t is not None], "maxTokens": params.max_tokens})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="short"),
            model="interop-test-model",
            stop_reason="endTurn",
        )


# --- scenarios ----------------------------------------------------------------


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
    out["resources"] = await d.resources()
    out["readme"] = await d.read("demo://readme")
    out["item_42"] = await d.read("demo://items/42")
    out["templates"] = await d.templates()
    out["prompts"] = await d.prompts()
    out["greet"] = await d.get_prompt("greet", {"name": "Ada"})
    out["complete"] = await d.complete_prompt("greet", "style", "p")
    return out


async def scenario_basic(d: Driver, opts: argparse.Namespace) -> dict[str, Any]:
    """Lists and calls tools, lists and reads resources: what a fixture
    server must answer exactly as recorded."""
    out: dict[str, Any] = {"tools": await d.tools()}
    out["echo"] = await d.call("echo", {"message": "hello"})
    out["resources"] = await d.resources()
    out["readme"] = await d.read("demo://readme")
    return out


async def scenario_everything(d: Driver, opts: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tools": await d.tools()}
    out["echo"] = await d.call("echo", {"message": "hello"})
    out["get_sum"] = await d.call("get-sum", {"a": 2, "b": 3})
    out["resources"] = await d.resources()
    # Static documents only: the dynamic ones embed their creation time.
    out["features_md"] = await d.read("demo://resource/static/document/features.md")
    out["templates"] = await d.templates()
    out["prompts"] = await d.prompts()
    out["simple_prompt"] = await d.get_prompt("simple-prompt")
    out["args_prompt"] = await d.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
    out["complete"] = await d.complete_prompt("completable-prompt", "department", "E")
    out["long_running"] = await d.call(
        "trigger-long-running-operation", {"duration": 1, "steps": 4}, with_progress=True
    )
    return out


async def scenario_cancel(d: Driver, opts: argparse.Namespace) -> dict[str, Any]:
    tools = await d.tools()
    names = {t["name"] for t in tools} if isinstance(tools, list) else set()
    if "slow_count" in names:
        tool, args = "slow_count", {"steps": 10000, "delay_ms": 50}
    elif "trigger-long-running-operation" in names:
        tool, args = "trigger-long-running-operation", {"duration": 500, "steps": 10000}
    else:
        raise SystemExit(f"cancel: no slow tool among {sorted(names)}")

    first_progress = anyio.Event()
    outcome: dict[str, Any] = {"tool": tool}

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    async def slow() -> None:
        try:
            res = await d.c.call_tool(d.prefix + tool, d.coerce(tool, args), progress_callback=on_progress)
            outcome["completed"] = norm(res)
        except MCPError as err:
            outcome.update(error_json(err))

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        with anyio.move_on_after(20) as waited:
            await first_progress.wait()
        outcome["progress_seen"] = not waited.cancelled_caught
        # Cancelling the caller's scope makes the SDK send notifications/cancelled
        # (handshake era) or drop the request's stream (2026-07-28).
        tg.cancel_scope.cancel()
    outcome["cancelled"] = "completed" not in outcome and "error" not in outcome
    outcome["after"] = await d.call("echo", {"message": "after-cancel"})
    return outcome


SCENARIOS = {
    "tools": scenario_tools,
    "demo-full": scenario_demo_full,
    "everything": scenario_everything,
    "basic": scenario_basic,
    "cancel": scenario_cancel,
}


def parse_headers(raw: list[str]) -> dict[str, str]:
    headers = {}
    for h in raw:
        k, sep, v = h.partition(":")
        if not sep:
            raise SystemExit(f"--header {h!r}: expected K:V")
        headers[k.strip()] = v.strip()
    return headers


def make_client(opts: argparse.Namespace, driver_box: list[Driver]) -> Client:
    mode = opts.mode
    if mode.startswith("legacy-"):
        # No public option selects an older handshake revision; the module
        # constant is read at initialize time (verified for 2025-03-26, 2024-11-05).
        client_session.LATEST_HANDSHAKE_VERSION = mode[len("legacy-") :]
        mode = "legacy"

    target = opts.target
    server: Any
    if target.startswith("stdio:"):
        argv = shlex.split(target[len("stdio:") :])
        if not argv:
            raise SystemExit("stdio: target needs a command")
        # Full environment: the gateway/demo server read RUST_LOG etc.
        server = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
    elif target.startswith("sse:"):
        # Legacy HTTP+SSE (2024-11-05): GET the stream, POST to its `endpoint`.
        server = sse_client(target[len("sse:") :], headers=parse_headers(opts.header) or None)
    elif target.startswith(("http://", "https://")):
        headers = parse_headers(opts.header)
        server = (
            streamable_http_client(target, http_client=create_mcp_http_client(headers=headers))
            if headers
            else target
        )
    else:
        raise SystemExit(f"target {target!r}: expected http(s)://…, sse:http(s)://…/sse or stdio:CMD")

    callbacks: dict[str, Any] = {}
    if opts.scenario == "demo-full":
        callbacks = {
            "elicitation_callback": lambda ctx, p: driver_box[0].on_elicit(ctx, p),
            "sampling_callback": lambda ctx, p: driver_box[0].on_sample(ctx, p),
        }
    return Client(
        server,
        mode=mode,
        cache=None,  # every request must reach the wire
        read_timeout_seconds=30,
        client_info=types.Implementation(name="interop-py", version="0"),
        **callbacks,
    )


async def run(opts: argparse.Namespace) -> int:
    box: list[Driver] = []
    client = make_client(opts, box)
    result: dict[str, Any] = {"scenario": opts.scenario}
    code = 0
    with anyio.fail_after(opts.timeout):
        try:
            await client.__aenter__()
        except BaseException as err:  # noqa: BLE001 - report any connect failure as data
            traceback.print_exc(file=sys.stderr)
            result["connect_error"] = describe(err)
            print(json.dumps(result, sort_keys=True))
            return 2
        try:
            driver = Driver(client, opts.prefix)
            box.append(driver)
            if opts.expect_protocol:
                result["protocol"] = client.protocol_version
                if client.protocol_version != opts.expect_protocol:
                    print(
                        f"negotiated {client.protocol_version}, expected {opts.expect_protocol}",
                        file=sys.stderr,
                    )
                    code = 3
            result.update(await SCENARIOS[opts.scenario](driver, opts))
        finally:
            await client.__aexit__(None, None, None)
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
