#!/usr/bin/env python3
"""The Python SDK's own OAuth flow against the gateway: 401 + WWW-Authenticate,
protected resource metadata, the authorization server it names, a
client-credentials token for the resource, retry — all inside the SDK.

    py_oauth_client.py URL ISSUER CLIENT_ID CLIENT_SECRET SCOPE

Prints one JSON object: {"tools": [...], "echo": "..."}.
"""
import json
import sys

import anyio
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def main(url, issuer, client_id, client_secret, scope):
    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryStorage(),
        client_id=client_id,
        client_secret=client_secret,
        scope=scope,
        issuer=issuer,
    )
    http = create_mcp_http_client(auth=provider)
    async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        echo = await client.call_tool("echo", {"message": "through oauth"})
        print(json.dumps({"tools": tools, "echo": echo.content[0].text}))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:6])
