// A real OpenID provider for the authentication tests: the npm package
// `oidc-provider` (a certified OpenID Connect server) on 127.0.0.1, port 0.
//
// Prints `oidc-provider listening on http://127.0.0.1:PORT` to stderr; the
// issuer is that URL. One client, `gateway-client` / `gateway-secret`, may use
// the client-credentials grant with any RFC 8707 `resource` and introspect.
// Access tokens are JWTs (RS256, typ at+jwt) with `aud` = the resource, or
// opaque (introspection only) when the resource contains "opaque".
//
// Test control: `POST /test/rotate` makes a new signing key current; the
// previous keys stay in the JWKS (as a provider rotating keys would publish
// them), so tokens they signed still verify.

import http from "node:http";
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const CLIENT = { id: "gateway-client", secret: "gateway-secret" };

let generation = 0;
function newKey() {
  generation += 1;
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { ...privateKey.export({ format: "jwk" }), kid: `key-${generation}`, alg: "RS256", use: "sig" };
}

let keys = [newKey()];
let issuer = "";
let provider = null;

function build() {
  const p = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT.id,
        client_secret: CLIENT.secret,
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    // The first key signs; the others are published for verification.
    jwks: { keys },
    scopes: ["mcp", "tools:call", "admin"],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({
          scope: "mcp tools:call admin",
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: resource.includes("opaque") ? "opaque" : "jwt",
          jwt: { sign: { alg: "RS256" } },
        }),
      },
    },
  });
  return p;
}

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/test/rotate") {
    keys = [newKey(), ...keys];
    provider = build();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    return;
  }
  provider.callback()(req, res);
});

server.listen(0, "127.0.0.1", () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  provider = build();
  process.stderr.write(`oidc-provider listening on ${issuer}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
