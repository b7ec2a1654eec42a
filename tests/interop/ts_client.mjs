#!/usr/bin/env node
// TypeScript MCP SDK v1 (@modelcontextprotocol/sdk 1.32.2) client driver for the
// interop tests. Same command line and JSON shape as py_client.py:
//
//   node ts_client.mjs MODE TARGET SCENARIO [--header 'K: V']... [--call NAME --args JSON]...
//                      [--expect-protocol V] [--prefix P] [--timeout S]
//
// MODE: `legacy` (initialize offering 2025-11-25, the SDK's latest) or
// `legacy-VERSION` (the initialize request is rewritten to offer VERSION). SDK v1
// has no 2026-07-28 support, so `auto` is refused rather than silently downgraded.
// TARGET: http(s)://…/mcp (Streamable HTTP), `sse:http(s)://…/sse` (legacy
// HTTP+SSE), `ws:ws://…/ws` (WebSocket, subprotocol `mcp`; Node 20 needs
// `--experimental-websocket`, e.g. in NODE_OPTIONS; no custom headers) or
// `stdio:CMD ARGS…`.
// SCENARIO: tools | demo-full | everything | cancel (see py_client.py).
// Output: ONE JSON object on stdout; exit 2 with {"connect_error"} when the
// connection fails, exit 3 when --expect-protocol does not match.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { WebSocketClientTransport } from "@modelcontextprotocol/sdk/client/websocket.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  McpError,
} from "@modelcontextprotocol/sdk/types.js";

const VOLATILE_KEYS = new Set(["_meta", "ttlMs", "cacheScope", "resultType", "nextCursor"]);

function norm(value) {
  if (Array.isArray(value)) return value.map(norm);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (!VOLATILE_KEYS.has(k) && v !== undefined && v !== null) out[k] = norm(v);
    }
    return out;
  }
  return value;
}

// Sorted keys, like Python's json.dumps(sort_keys=True), so output diffs line up.
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

function errorJson(err) {
  if (!(err instanceof McpError)) throw err;
  // McpError prefixes the wire message with "MCP error CODE: "; report the wire message.
  const prefix = `MCP error ${err.code}: `;
  const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  const out = { code: err.code, message };
  if (err.data !== undefined) out.data = norm(err.data);
  return { error: out };
}

async function step(promise) {
  try {
    return norm(await promise);
  } catch (err) {
    return errorJson(err);
  }
}

function parseArgs(argv) {
  const opts = { header: [], call: [], args: [], prefix: "", timeout: 90, expectProtocol: null };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--header") opts.header.push(next());
    else if (a === "--call") opts.call.push(next());
    else if (a === "--args") opts.args.push(next());
    else if (a === "--prefix") opts.prefix = next();
    else if (a === "--timeout") opts.timeout = Number(next());
    else if (a === "--expect-protocol") opts.expectProtocol = next();
    else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 3) throw new Error("usage: ts_client.mjs MODE TARGET SCENARIO [options]");
  [opts.mode, opts.target, opts.scenario] = pos;
  return opts;
}

// A shell-like split for `stdio:` targets: whitespace, single and double quotes, backslash.
function splitCommandLine(s) {
  const out = [];
  let cur = null;
  let quote = null;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === "\\" && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      cur ??= "";
    } else if (ch === "\\" && i + 1 < s.length) {
      cur = (cur ?? "") + s[++i];
    } else if (/\s/.test(ch)) {
      if (cur !== null) out.push(cur);
      cur = null;
    } else {
      cur = (cur ?? "") + ch;
    }
  }
  if (quote) throw new Error(`unterminated quote in ${s}`);
  if (cur !== null) out.push(cur);
  return out;
}

// Wraps a transport to learn the negotiated version (the Client keeps it private)
// and to offer an older revision in `initialize` for legacy-VERSION modes.
class Tap {
  constructor(inner, offerVersion) {
    this.inner = inner;
    this.offerVersion = offerVersion;
    this.protocolVersion = null;
    // Every notifications/progress as it arrived. The SDK's onprogress drops a
    // progress notification that is still queued when the response lands
    // (seen over stdio with server-everything: 3 of 4 arrive), so progress is
    // read off the wire here instead.
    this.progress = [];
  }
  async start() {
    this.inner.onmessage = (m, extra) => {
      if (m.method === "notifications/progress") this.progress.push(m.params);
      this.onmessage?.(m, extra);
    };
    this.inner.onclose = () => this.onclose?.();
    this.inner.onerror = (e) => this.onerror?.(e);
    return this.inner.start();
  }
  async send(message, options) {
    if (this.offerVersion && message.method === "initialize") {
      message = { ...message, params: { ...message.params, protocolVersion: this.offerVersion } };
    }
    return this.inner.send(message, options);
  }
  async close() {
    return this.inner.close();
  }
  setProtocolVersion(v) {
    this.protocolVersion = v;
    this.inner.setProtocolVersion?.(v);
  }
  get sessionId() {
    return this.inner.sessionId;
  }
}

class Driver {
  constructor(client, tap, prefix) {
    this.c = client;
    this.tap = tap;
    this.prefix = prefix;
    this.elicitations = [];
    this.samplings = [];
    this.toolSchemas = {};
  }

  strip(name) {
    return this.prefix && name.startsWith(this.prefix) ? name.slice(this.prefix.length) : name;
  }

  async listAll(method, key) {
    const items = [];
    let cursor;
    for (let i = 0; i < 100; i++) {
      const page = await this.c[method](cursor ? { cursor } : undefined);
      items.push(...page[key]);
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    return items;
  }

  async tools() {
    try {
      const out = [];
      for (const t of await this.listAll("listTools", "tools")) {
        const d = norm(t);
        d.name = this.strip(t.name);
        this.toolSchemas[d.name] = d.inputSchema ?? {};
        const kept = {};
        for (const k of ["name", "title", "description", "annotations", "inputSchema", "outputSchema"]) {
          if (k in d) kept[k] = d[k];
        }
        out.push(kept);
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (err) {
      return errorJson(err);
    }
  }

  async sortedList(method, key, sortKey, rename) {
    try {
      const out = (await this.listAll(method, key)).map((x) => {
        const d = norm(x);
        if (rename) d.name = this.strip(x.name);
        return d;
      });
      return out.sort((a, b) => (a[sortKey] < b[sortKey] ? -1 : a[sortKey] > b[sortKey] ? 1 : 0));
    } catch (err) {
      return errorJson(err);
    }
  }
  resources() {
    return this.sortedList("listResources", "resources", "uri", false);
  }
  templates() {
    return this.sortedList("listResourceTemplates", "resourceTemplates", "uriTemplate", false);
  }
  prompts() {
    return this.sortedList("listPrompts", "prompts", "name", true);
  }

  coerce(tool, args) {
    const props = this.toolSchemas[tool]?.properties ?? {};
    const out = { ...args };
    for (const [k, v] of Object.entries(args)) {
      const want = props[k]?.type;
      if ((want === "integer" || want === "number") && typeof v === "string" && /^-?\d+$/.test(v)) out[k] = Number(v);
      else if (want === "string" && typeof v === "number") out[k] = String(v);
    }
    return out;
  }

  async call(tool, args, withProgress = false) {
    const options = { timeout: 30000 };
    // onprogress makes the SDK send a progressToken; the values come from the Tap.
    if (withProgress) options.onprogress = () => {};
    const seen = this.tap.progress.length;
    const result = await step(
      this.c.callTool({ name: this.prefix + tool, arguments: this.coerce(tool, args) }, undefined, options),
    );
    if (!withProgress) return result;
    const progress = this.tap.progress.slice(seen).map((p) => {
      const e = { progress: p.progress };
      if (p.total !== undefined) e.total = p.total;
      return e;
    });
    return { result, progress };
  }

  read(uri) {
    return step(this.c.readResource({ uri }));
  }

  getPrompt(name, args) {
    return step(this.c.getPrompt({ name: this.prefix + name, ...(args ? { arguments: args } : {}) }));
  }

  async completePrompt(prompt, arg, value) {
    const res = await step(
      this.c.complete({ ref: { type: "ref/prompt", name: this.prefix + prompt }, argument: { name: arg, value } }),
    );
    return res.completion ?? res;
  }
}

async function scenarioTools(d, opts) {
  const out = { tools: await d.tools() };
  const calls = [];
  for (let i = 0; i < opts.call.length; i++) {
    calls.push({ name: opts.call[i], result: await d.call(opts.call[i], JSON.parse(opts.args[i] ?? "{}")) });
  }
  if (calls.length) out.calls = calls;
  return out;
}

async function scenarioDemoFull(d) {
  const out = { tools: await d.tools() };
  out.echo = await d.call("echo", { message: "hello" });
  out.delete_item = await d.call("delete_item", { id: "42" });
  out.slow_count = await d.call("slow_count", { steps: 3, delay_ms: 10 }, true);
  out.ask_user = await d.call("ask_user", { question: "favourite colour?" });
  out.summarize = await d.call("summarize", { text: "a long text that needs summarizing" });
  out.elicitations = d.elicitations;
  out.samplings = d.samplings;
  out.resources = await d.resources();
  out.readme = await d.read("demo://readme");
  out.item_42 = await d.read("demo://items/42");
  out.templates = await d.templates();
  out.prompts = await d.prompts();
  out.greet = await d.getPrompt("greet", { name: "Ada" });
  out.complete = await d.completePrompt("greet", "style", "p");
  return out;
}

async function scenarioEverything(d) {
  const out = { tools: await d.tools() };
  out.echo = await d.call("echo", { message: "hello" });
  out.get_sum = await d.call("get-sum", { a: 2, b: 3 });
  out.resources = await d.resources();
  out.features_md = await d.read("demo://resource/static/document/features.md");
  out.templates = await d.templates();
  out.prompts = await d.prompts();
  out.simple_prompt = await d.getPrompt("simple-prompt");
  out.args_prompt = await d.getPrompt("args-prompt", { city: "Paris", state: "IDF" });
  out.complete = await d.completePrompt("completable-prompt", "department", "E");
  out.long_running = await d.call("trigger-long-running-operation", { duration: 1, steps: 4 }, true);
  return out;
}

async function scenarioCancel(d) {
  const tools = await d.tools();
  const names = new Set(Array.isArray(tools) ? tools.map((t) => t.name) : []);
  let tool, args;
  if (names.has("slow_count")) [tool, args] = ["slow_count", { steps: 10000, delay_ms: 50 }];
  else if (names.has("trigger-long-running-operation"))
    [tool, args] = ["trigger-long-running-operation", { duration: 500, steps: 10000 }];
  else throw new Error(`cancel: no slow tool among ${[...names].sort()}`);

  const outcome = { tool };
  const abort = new AbortController();
  let sawProgress;
  const firstProgress = new Promise((resolve) => (sawProgress = resolve));
  const call = d.c
    .callTool({ name: d.prefix + tool, arguments: d.coerce(tool, args) }, undefined, {
      signal: abort.signal,
      timeout: 600000,
      onprogress: () => sawProgress(true),
    })
    .then(
      (res) => (outcome.completed = norm(res)),
      (err) => {
        // Aborting rejects the call (the SDK wraps the reason in an McpError):
        // that is the expected path; anything before the abort is a real error.
        if (!abort.signal.aborted) Object.assign(outcome, errorJson(err));
      },
    );
  outcome.progress_seen = await Promise.race([firstProgress, new Promise((r) => setTimeout(() => r(false), 20000))]);
  // Aborting makes the SDK send notifications/cancelled for the request.
  abort.abort("interop cancel");
  await call;
  outcome.cancelled = !("completed" in outcome) && !("error" in outcome);
  outcome.after = await d.call("echo", { message: "after-cancel" });
  return outcome;
}

const SCENARIOS = {
  tools: scenarioTools,
  "demo-full": scenarioDemoFull,
  everything: scenarioEverything,
  cancel: scenarioCancel,
};

function parseHeaders(raw) {
  const headers = {};
  for (const h of raw) {
    const i = h.indexOf(":");
    if (i < 0) throw new Error(`--header ${h}: expected K:V`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return headers;
}

function makeTransport(opts) {
  let offer = null;
  if (opts.mode.startsWith("legacy-")) offer = opts.mode.slice("legacy-".length);
  else if (opts.mode !== "legacy") {
    throw new Error(`mode ${opts.mode}: TS SDK v1 speaks only the handshake era (legacy, legacy-VERSION)`);
  }
  let inner;
  if (opts.target.startsWith("stdio:")) {
    const argv = splitCommandLine(opts.target.slice("stdio:".length));
    if (!argv.length) throw new Error("stdio: target needs a command");
    inner = new StdioClientTransport({ command: argv[0], args: argv.slice(1), env: { ...process.env }, stderr: "inherit" });
  } else if (opts.target.startsWith("sse:")) {
    // Legacy HTTP+SSE (2024-11-05): GET the stream, POST to its `endpoint`.
    inner = new SSEClientTransport(new URL(opts.target.slice("sse:".length)), {
      requestInit: { headers: parseHeaders(opts.header) },
    });
  } else if (opts.target.startsWith("ws:")) {
    // WebSocket: the browser API has no way to add headers.
    if (opts.header.length) throw new Error("ws: targets take no --header");
    if (typeof WebSocket === "undefined") throw new Error("no global WebSocket: run node --experimental-websocket");
    inner = new WebSocketClientTransport(new URL(opts.target.slice("ws:".length)));
  } else if (/^https?:\/\//.test(opts.target)) {
    inner = new StreamableHTTPClientTransport(new URL(opts.target), {
      requestInit: { headers: parseHeaders(opts.header) },
    });
  } else {
    throw new Error(`target ${opts.target}: expected http(s)://…, sse:http(s)://…/sse, ws:ws://…/ws or stdio:CMD`);
  }
  return new Tap(inner, offer);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!SCENARIOS[opts.scenario]) throw new Error(`unknown scenario ${opts.scenario}`);
  const deadline = setTimeout(() => {
    console.error(`ts_client: timed out after ${opts.timeout}s`);
    process.exit(124);
  }, opts.timeout * 1000);

  const demo = opts.scenario === "demo-full";
  const client = new Client(
    { name: "interop-ts", version: "0" },
    { capabilities: demo ? { sampling: {}, elicitation: { form: {} } } : {} },
  );
  let driver;
  if (demo) {
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      driver.elicitations.push({ message: req.params.message });
      return { action: "accept", content: { answer: "blue" } };
    });
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      const texts = [];
      for (const m of req.params.messages) {
        for (const c of Array.isArray(m.content) ? m.content : [m.content]) if (c.text !== undefined) texts.push(c.text);
      }
      driver.samplings.push({ messages: texts, maxTokens: req.params.maxTokens });
      return {
        role: "assistant",
        content: { type: "text", text: "short" },
        model: "interop-test-model",
        stopReason: "endTurn",
      };
    });
  }

  const result = { scenario: opts.scenario };
  const transport = makeTransport(opts);
  try {
    await client.connect(transport, { timeout: 30000 });
  } catch (err) {
    console.error(err);
    result.connect_error = String(err?.message ?? err);
    process.stdout.write(JSON.stringify(sortKeys(result)) + "\n");
    process.exit(2);
  }
  let code = 0;
  driver = new Driver(client, transport, opts.prefix);
  if (opts.expectProtocol) {
    result.protocol = transport.protocolVersion;
    if (transport.protocolVersion !== opts.expectProtocol) {
      console.error(`negotiated ${transport.protocolVersion}, expected ${opts.expectProtocol}`);
      code = 3;
    }
  }
  Object.assign(result, await SCENARIOS[opts.scenario](driver, opts));
  // Streamable HTTP: end the session with DELETE like the Python client does.
  await transport.inner.terminateSession?.().catch((e) => console.error(`terminateSession: ${e}`));
  await client.close();
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(sortKeys(result)) + "\n");
  process.exit(code);
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exit(1);
});
