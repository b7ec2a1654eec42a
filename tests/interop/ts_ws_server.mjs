#!/usr/bin/env node
// @modelcontextprotocol/server-everything (its `createServer()`, TS SDK 1.x
// `McpServer`) over a WebSocket, with the `ws@8` package:
//
//     node ts_ws_server.mjs [PORT] [--no-subprotocol]     (PORT 0: any free port)
//
// `--no-subprotocol` accepts the upgrade without selecting `mcp` (a server a
// client following the SDK convention must refuse).
// prints `ts_ws_server listening on ws://127.0.0.1:PORT/ws` on stderr. The
// SDK has no WebSocket server transport; the shim below only moves frames
// (subprotocol `mcp`, one JSON-RPC message per text frame, validated with the
// SDK's own schema) and leaves every protocol decision to the SDK. One server
// instance per connection, as server-everything's own SSE and HTTP modes do.
import { WebSocketServer } from "ws";
import { JSONRPCMessageSchema } from "@modelcontextprotocol/sdk/types.js";
import { createServer } from "@modelcontextprotocol/server-everything/dist/server/index.js";

class WebSocketServerTransport {
  constructor(socket) {
    this.socket = socket;
  }
  async start() {
    this.socket.on("message", (data) => {
      let message;
      try {
        message = JSONRPCMessageSchema.parse(JSON.parse(data.toString("utf8")));
      } catch (error) {
        this.onerror?.(error);
        return;
      }
      this.onmessage?.(message);
    });
    this.socket.on("close", () => this.onclose?.());
    this.socket.on("error", (error) => this.onerror?.(error));
  }
  async send(message) {
    this.socket.send(JSON.stringify(message));
  }
  async close() {
    this.socket.close();
  }
}

const port = Number(process.argv[2] ?? 0);
const selectProtocol = !process.argv.includes("--no-subprotocol");
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  path: "/ws",
  handleProtocols: (protocols) => (selectProtocol && protocols.has("mcp") ? "mcp" : false),
});
wss.on("connection", async (socket) => {
  const { server, cleanup } = createServer();
  socket.on("close", () => cleanup());
  await server.connect(new WebSocketServerTransport(socket));
});
wss.on("listening", () => {
  console.error(`ts_ws_server listening on ws://127.0.0.1:${wss.address().port}/ws`);
});
