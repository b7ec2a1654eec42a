"""Smoke test of the demo MCP server (`mcp-gateway demo-server`) with the official Python SDK.

Usage:
    python demo_smoke.py [--mode auto|legacy] URL            # Streamable HTTP, e.g. http://127.0.0.1:8765/mcp
    python demo_smoke.py [--mode auto|legacy] CMD [ARGS...]  # stdio, e.g. target/debug/mcp-gateway demo-server

`auto` (default) negotiates 2026-07-28 (stateless, MRTR, subscriptions/listen);
`legacy` uses the initialize handshake (2025-11-25; server→client requests, GET stream).
The target may also be the gateway in front of the demo server. Exits 0 when every
check passes, 1 otherwise; prints one line per check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from typing import Any

import anyio
from mcp import Client, StdioServerParameters, types
from mcp.shared.exceptions import MCPError

EXPECTED_TOOLS = {"echo", "delete_item", "slow_count", "ask_user", "summarize", "toggle_extra_tool", "bump_counter"}

EXPECTED_HANDSHAKE_VERSION = "2025-11-25"

failures: list[str] = []


def check(name: str, ok: bool, detail: Any = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail!r}"))
    if not ok:
        failures.append(name)


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"answer": f"42 ({params.message})"})


async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    prompt = params.messages[0].content
    prompt_text = getattr(prompt, "text", "")
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"short [{prompt_text}]"),
        model="fake-model",
        stop_reason="endTurn",
    )


async def run(target: Any, mode: str) -> None:
    logs: list[Any] = []
    notifications: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_message(message: Any) -> None:
        if not isinstance(message, Exception):
            notifications.append(message)

    async with Client(
        target,
        mode=mode,
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        logging_callback=on_log,
        message_handler=on_message,
        log_level="info",  # 2026-07-28 opt-in; the handshake era uses logging/setLevel below
        read_timeout_seconds=30,
    ) as client:
        modern = client.protocol_version == "2026-07-28"
        expected_version = "2026-07-28" if mode == "auto" else EXPECTED_HANDSHAKE_VERSION
        check("protocol version", client.protocol_version == expected_version, client.protocol_version)
        info = client.server_info
        check("server name", info is not None and info.name == "mcp-gateway-demo", info)
        caps = client.server_capabilities
        check("capabilities", caps.tools is not None and caps.resources is not None and caps.prompts is not None, caps)
        if not modern:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.set_logging_level("info")

        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        check("tools/list", EXPECTED_TOOLS <= set(tools), sorted(tools))
        echo_tool = tools.get("echo")
        check(
            "echo annotations",
            echo_tool is not None and echo_tool.annotations is not None and echo_tool.annotations.read_only_hint is True,
            echo_tool,
        )
        delete_tool = tools.get("delete_item")
        check(
            "delete_item annotations",
            delete_tool is not None
            and delete_tool.annotations is not None
            and delete_tool.annotations.destructive_hint is True
            and delete_tool.annotations.read_only_hint is False,
            delete_tool,
        )

        result = await client.call_tool("echo", {"message": "hello"})
        check("echo text", text_of(result) == "hello", result)
        check("echo structuredContent", result.structured_content == {"message": "hello"}, result.structured_content)
        check("echo log", any(getattr(log, "logger", None) == "demo" for log in logs), logs)

        result = await client.call_tool("delete_item", {"id": "7"})
        check("delete_item", text_of(result) == "deleted 7", result)

        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        result = await client.call_tool("slow_count", {"steps": 3, "delay_ms": 20}, progress_callback=on_progress)
        check("slow_count result", text_of(result) == "counted to 3", result)
        check("slow_count progress", [p[0] for p in progress] == [1, 2, 3] and progress[-1][1] == 3, progress)

        # Cancellation (stdio: notifications/cancelled; HTTP: closing the stream), then still healthy.
        with anyio.move_on_after(0.3):
            await client.call_tool("slow_count", {"steps": 100, "delay_ms": 100})
        result = await client.call_tool("echo", {"message": "after cancel"})
        check("healthy after cancel", text_of(result) == "after cancel", result)

        result = await client.call_tool("ask_user", {"question": "favourite number?"})
        if client.protocol_version < "2025-06-18":  # no elicitation before 2025-06-18: a tool error
            check("ask_user (no elicitation)", result.is_error is True and "elicitation" in text_of(result), result)
        else:
            check("ask_user (elicitation)", text_of(result) == "user said: 42 (favourite number?)", result)

        result = await client.call_tool("summarize", {"text": "a long story"})
        check("summarize (sampling)", text_of(result) == "summary: short [Summarize: a long story]", result)

        resources = await client.list_resources()
        uris = {str(r.uri) for r in resources.resources}
        check("resources/list", {"demo://readme", "demo://counter"} <= uris, uris)
        templates = await client.list_resource_templates()
        check(
            "resources/templates/list",
            [t.uri_template for t in templates.resource_templates] == ["demo://items/{id}"],
            templates,
        )
        readme = await client.read_resource("demo://readme")
        check("read readme", "demo server" in readme.contents[0].text and readme.contents[0].mime_type == "text/markdown", readme)
        item = await client.read_resource("demo://items/42")
        check("read template item", item.contents[0].text == "item 42", item)
        try:
            await client.read_resource("demo://missing")
            check("unknown resource error", False, "no error")
        except MCPError as error:
            check("unknown resource error", error.code == (-32602 if modern else -32002), error.error)

        prompts = await client.list_prompts()
        check("prompts/list", [p.name for p in prompts.prompts] == ["greet"], prompts)
        prompt = await client.get_prompt("greet", {"name": "Ada", "style": "pirate"})
        check("prompts/get", prompt.messages[0].content.text == "Say hello to Ada in a pirate way", prompt)
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        check("prompts/get default style", prompt.messages[0].content.text == "Say hello to Ada in a friendly way", prompt)
        try:
            await client.get_prompt("greet", {})
            check("prompts/get missing name", False, "no error")
        except MCPError as error:
            check("prompts/get missing name", error.code == -32602, error.error)

        done = await client.complete(types.PromptReference(type="ref/prompt", name="greet"), {"name": "style", "value": "f"})
        check("complete prompt arg", done.completion.values == ["formal", "friendly"], done)
        done = await client.complete(
            types.ResourceTemplateReference(type="ref/resource", uri="demo://items/{id}"), {"name": "id", "value": "4"}
        )
        check("complete template arg", done.completion.values == ["42"], done)

        # Change notifications: listen (2026-07-28) or subscribe + GET stream / stdout (handshake).
        if modern:
            async with client.listen(tools_list_changed=True, resource_subscriptions=["demo://counter"]) as sub:
                check("listen acknowledged", sub.honored.tools_list_changed is True, sub.honored)
                await client.call_tool("toggle_extra_tool", {})
                await client.call_tool("bump_counter", {})
                seen: list[Any] = []
                with anyio.move_on_after(5):
                    async for event in sub:
                        seen.append(event)
                        if len(seen) >= 2:
                            break
                names = sorted(type(e).__name__ for e in seen)
                check("listen events", names == ["ResourceUpdated", "ToolsListChanged"], seen)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.subscribe_resource("demo://counter")
            await client.call_tool("toggle_extra_tool", {})
            await client.call_tool("bump_counter", {})
            with anyio.move_on_after(5):
                while not (
                    any(isinstance(n, types.ToolListChangedNotification) for n in notifications)
                    and any(isinstance(n, types.ResourceUpdatedNotification) for n in notifications)
                ):
                    await anyio.sleep(0.05)
            kinds = {type(n).__name__ for n in notifications}
            check(
                "list_changed + resources/updated",
                {"ToolListChangedNotification", "ResourceUpdatedNotification"} <= kinds,
                kinds,
            )
        names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}
        check("extra_tool toggled on", "extra_tool" in names, names)
        result = await client.call_tool("extra_tool", {})
        check("extra_tool call", text_of(result) == "extra tool called", result)
        await client.call_tool("toggle_extra_tool", {})  # back to the initial state
        names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}
        check("extra_tool toggled off", "extra_tool" not in names, names)
        counter = await client.read_resource("demo://counter")
        check("counter readable", counter.contents[0].text.isdigit(), counter)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto")
    parser.add_argument(
        "--handshake-version",
        help="legacy mode only: offer this revision in initialize (e.g. 2025-03-26) instead of 2025-11-25",
    )
    parser.add_argument("target", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if not args.target:
        parser.error("missing target (URL or command)")
    first, rest = args.target[0], args.target[1:]
    global EXPECTED_HANDSHAKE_VERSION
    if args.handshake_version:
        import mcp.client.session as client_session

        client_session.LATEST_HANDSHAKE_VERSION = args.handshake_version
        EXPECTED_HANDSHAKE_VERSION = args.handshake_version
    target: Any = first if first.startswith("http") else StdioServerParameters(command=first, args=rest)
    asyncio.run(run(target, args.mode))
    print(f"{'PASS' if not failures else 'FAIL'} ({len(failures)} failed) mode={args.mode} target={' '.join(args.target)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
