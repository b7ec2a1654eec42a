#!/usr/bin/env python3
"""A Python SDK (mcp 2.3.0) server with the same surface as `mcp-gateway demo-server`.

    py_demo_server.py stdio
    py_demo_server.py http PORT      # http://127.0.0.1:PORT/mcp, both eras
    py_demo_server.py sse PORT       # legacy HTTP+SSE: GET http://127.0.0.1:PORT/sse,
                                     # POST /messages/?session_id=…

Two uses: it checks the `demo-full` scenario of py_client.py / ts_client.mjs
against a server other than ours, and it is a backend that speaks 2026-07-28
(`server/discover`), which server-everything does not. Host checks stay on (as
in a real deployment): a gateway must forward a loopback Host with its port.

Surface (what `demo-full` expects):
  tools     echo{message}                 read-only
            delete_item{id: string}       destructive
            slow_count{steps, delay_ms}   progress per step
            ask_user{question}            elicitation, answer field `answer`
            summarize{text}               sampling
  resources demo://readme, template demo://items/{id}
  prompts   greet{name, style?}, completion of `style` by prefix
"""

import sys
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve, Sample
from mcp_types import (
    Completion,
    CreateMessageResult,
    PromptReference,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel

STYLES = ["formal", "pirate", "plain", "poetic"]

mcp = MCPServer("py-demo")


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(message: str) -> str:
    """Echo the message back."""
    return message


@mcp.tool(annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False))
def delete_item(id: str) -> str:
    """Delete an item (pretend)."""
    return f"deleted {id}"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
async def slow_count(steps: int, delay_ms: int, ctx: Context) -> str:
    """Count to `steps`, reporting progress after each step."""
    for i in range(steps):
        await anyio.sleep(delay_ms / 1000)
        await ctx.report_progress(i + 1, steps)
    return f"counted to {steps}"


class Answer(BaseModel):
    answer: str


# Resolvers rather than ctx.elicit / session.create_message: the SDK sends them
# as server->client requests on a handshake-era connection and as an
# `input_required` round on 2026-07-28, so both eras are served.
def ask_question(question: str) -> Elicit[Answer]:
    return Elicit(question, Answer)


@mcp.tool()
async def ask_user(question: str, answer: Annotated[ElicitationResult[Answer], Resolve(ask_question)]) -> str:
    """Ask the client's user a question (elicitation)."""
    if answer.action != "accept":
        return f"user chose {answer.action}"
    return f"user answered {answer.data.answer}"


def sample_summary(text: str) -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=f"Summarize: {text}"))],
        max_tokens=50,
    )


@mcp.tool()
async def summarize(text: str, summary: Annotated[CreateMessageResult, Resolve(sample_summary)]) -> str:
    """Summarize text with the client's model (sampling)."""
    return getattr(summary.content, "text", "")


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


if __name__ == "__main__":
    if sys.argv[1:2] == ["stdio"]:
        mcp.run("stdio")
    elif sys.argv[1:2] == ["http"] and len(sys.argv) == 3:
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif sys.argv[1:2] == ["sse"] and len(sys.argv) == 3:
        mcp.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        sys.exit("usage: py_demo_server.py stdio | http PORT | sse PORT")
