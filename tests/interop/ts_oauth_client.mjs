// The TypeScript SDK's own OAuth flow against the gateway: connect without a
// token, get 401 + WWW-Authenticate, discover the gateway's protected
// resource metadata, the authorization server it names, fetch a
// client-credentials token for the resource, retry — all inside the SDK.
//
//   node ts_oauth_client.mjs URL ISSUER CLIENT_ID CLIENT_SECRET SCOPE
//
// Prints one JSON object: {"tools": [...], "echo": "...", "resource": "..."}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";

const [url, issuer, clientId, clientSecret, scope] = process.argv.slice(2);
const provider = new ClientCredentialsProvider({ clientId, clientSecret, scope, expectedIssuer: issuer });
// Record the resource indicator the SDK asks for.
let resource = null;
const fetchFn = async (input, init) => {
  const target = typeof input === "string" ? input : input.url ?? String(input);
  if (target.startsWith(issuer) && init?.body instanceof URLSearchParams) {
    resource = init.body.get("resource") ?? resource;
  }
  return fetch(input, init);
};
const client = new Client({ name: "ts-oauth", version: "0" });
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: fetchFn });
try {
  await client.connect(transport);
} catch (e) {
  // The first attempt ends in UnauthorizedError once the SDK has the token;
  // connecting again uses it (the SDK's documented client-credentials flow).
  if (e?.name !== "UnauthorizedError" && !String(e).includes("Unauthorized")) throw e;
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: fetchFn }));
}
const tools = (await client.listTools()).tools.map((t) => t.name);
const echo = await client.callTool({ name: "echo", arguments: { message: "through oauth" } });
process.stdout.write(JSON.stringify({ tools, echo: echo.content[0].text, resource }) + "\n");
await client.close();
