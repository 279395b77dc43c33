// panva's oidc-provider (OpenID-certified) as flyteauth's EXTERNAL authorization server
// (`authServerType: External`): resource indicators make it issue RS256 JWT access tokens whose
// `aud` is flyteauth's public URL (or whatever resource the client asks for), with scope
// "all offline". devInteractions serve a login form that accepts any login and a consent form.
//
// Usage: node external_as.mjs '<json>'   with
//   {
//     "resource": "http://127.0.0.1:P",          // flyteauth's public URL: default resource/audience
//     "propellerSecret": "...",                  // secret of the confidential flytepropeller client
//     "keys": [<private RSA JWK>, ...],          // optional: signing keys (first signs); generated if absent
//     "noOAuthMetadata": true,                   // optional: 404 on /.well-known/oauth-authorization-server
//                                                //   (like the many IdPs that serve only openid-configuration)
//     "port": 0                                  // optional fixed port (a restarted AS keeps its issuer)
//   }
// Prints one JSON line {"issuer": "http://127.0.0.1:N", "admin": "http://127.0.0.1:M"} on stdout
// and runs until SIGTERM. The admin port (test hooks, not part of the AS):
//   GET  /stats   {"jwks": n, "oauthMetadata": n, "openidMetadata": n, "requests": n}
//   POST /reset   zero the counters
//   POST /rotate  a new signing key goes in front (old ones stay published); {"kid": new kid}
//   GET  /keys    the private signing JWKs (to start a second issuer with the same keys)
// Every JWKS request is also logged on stderr ("jwks request #n").

import { generateKeyPairSync, randomBytes } from "node:crypto";
import http from "node:http";

import Provider, { errors } from "oidc-provider";

const opts = JSON.parse(process.argv[2] ?? "{}");
for (const k of ["resource", "propellerSecret"]) {
  if (!opts[k]) {
    console.error(`external_as.mjs: missing "${k}" in the JSON argument`);
    process.exit(2);
  }
}

const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

function newKey() {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  return { ...jwk, kid: `k-${randomBytes(6).toString("hex")}`, alg: "RS256", use: "sig" };
}

let keys = Array.isArray(opts.keys) && opts.keys.length ? opts.keys : [newKey()];
const cookieKeys = [randomBytes(32).toString("base64url")];
const stats = { jwks: 0, oauthMetadata: 0, openidMetadata: 0, requests: 0 };

function account(id) {
  return {
    accountId: id,
    async claims() {
      return { sub: id, name: `AS User ${id}`, email: `${id}@as.example.test` };
    },
  };
}

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(opts.port ?? 0, "127.0.0.1", resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

function makeProvider() {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: "flytepropeller",
        client_secret: opts.propellerSecret,
        grant_types: ["client_credentials"],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: "client_secret_basic",
        scope: "all offline",
      },
      {
        client_id: "flytectl",
        application_type: "native",
        token_endpoint_auth_method: "none",
        redirect_uris: ["http://localhost:53593/callback"],
        grant_types: ["authorization_code", "refresh_token", DEVICE_GRANT],
        response_types: ["code"],
      },
    ],
    jwks: { keys },
    pkce: { required: () => true },
    scopes: ["openid", "offline_access", "all", "offline"],
    findAccount: async (_ctx, id) => account(id),
    // flytekit asks for "all offline" (not offline_access): give public clients a refresh token anyway.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => opts.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (!/^https?:\/\//.test(resourceIndicator)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: "all offline",
            audience: resourceIndicator,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "RS256" } },
          };
        },
      },
    },
    cookies: { keys: cookieKeys },
    renderError: async (ctx, out) => {
      ctx.type = "text/plain";
      ctx.body = `oidc-provider error: ${JSON.stringify(out)}`;
    },
  });
  for (const ev of ["server_error", "authorization.error", "grant.error", "device_authorization.error"]) {
    provider.on(ev, (_ctx, err) => console.error(`as ${ev}:`, err.message, err.error_description ?? ""));
  }
  return provider;
}

let handler = makeProvider().callback();

server.on("request", (req, res) => {
  stats.requests += 1;
  const path = (req.url ?? "").split("?")[0];
  if (path === "/jwks") {
    stats.jwks += 1;
    console.error(`jwks request #${stats.jwks}`);
  } else if (path === "/.well-known/oauth-authorization-server") {
    stats.oauthMetadata += 1;
    if (opts.noOAuthMetadata) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
  } else if (path === "/.well-known/openid-configuration") {
    stats.openidMetadata += 1;
  }
  handler(req, res);
});

const admin = http.createServer((req, res) => {
  const json = (code, body) => {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.method === "GET" && req.url === "/stats") return json(200, stats);
  if (req.method === "GET" && req.url === "/keys") return json(200, { keys });
  if (req.method === "POST" && req.url === "/reset") {
    for (const k of Object.keys(stats)) stats[k] = 0;
    return json(200, stats);
  }
  if (req.method === "POST" && req.url === "/rotate") {
    const k = newKey();
    keys = [k, ...keys];
    handler = makeProvider().callback();
    console.error(`rotated: signing with ${k.kid}`);
    return json(200, { kid: k.kid });
  }
  return json(404, { error: "not found" });
});
await new Promise((resolve) => admin.listen(0, "127.0.0.1", resolve));

const stop = () => {
  admin.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

console.log(JSON.stringify({ issuer, admin: `http://127.0.0.1:${admin.address().port}` }));
