// A real OpenID Provider (panva's oidc-provider, OpenID-certified) as flyteauth's identity
// source for the browser tests. devInteractions serve a login form that accepts any login
// (the login becomes `sub`) and a consent screen.
//
// Usage: node idp.mjs '<json>'   with
//   {"clientId": "flyteauth", "clientSecret": "...", "redirectUris": ["http://127.0.0.1:P/callback"]}
// Listens on 127.0.0.1:<free port>, then prints one JSON line {"issuer": "http://127.0.0.1:N"}
// on stdout. Runs until killed (SIGTERM).

import { randomBytes } from "node:crypto";
import http from "node:http";

import Provider from "oidc-provider";

const opts = JSON.parse(process.argv[2] ?? "{}");
for (const k of ["clientId", "clientSecret", "redirectUris"]) {
  if (!opts[k]) {
    console.error(`idp.mjs: missing "${k}" in the JSON argument`);
    process.exit(2);
  }
}

/** The IdP's user for a login name: sub = the login, a display name, an email. */
function account(id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        name: `IdP User ${id}`,
        preferred_username: id,
        email: `${id}@idp.example.test`,
        email_verified: true,
      };
    },
  };
}

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(0, "127.0.0.1", resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: opts.clientId,
      client_secret: opts.clientSecret,
      redirect_uris: opts.redirectUris,
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  // flyteauth must send S256 PKCE even though it is a confidential client (DESIGN §4).
  pkce: { required: () => true },
  claims: {
    openid: ["sub"],
    profile: ["name", "preferred_username"],
    email: ["email", "email_verified"],
  },
  scopes: ["openid", "offline_access", "profile", "email"],
  findAccount: async (_ctx, id) => account(id),
  features: { devInteractions: { enabled: true } },
  cookies: { keys: [randomBytes(32).toString("base64url")] },
  // Render errors as JSON-ish text; the tests read them from the browser page on failure.
  renderError: async (ctx, out) => {
    ctx.type = "text/plain";
    ctx.body = `oidc-provider error: ${JSON.stringify(out)}`;
  },
});
provider.on("server_error", (_ctx, err) => console.error("idp server_error:", err));
provider.on("authorization.error", (_ctx, err) =>
  console.error("idp authorization.error:", err.message, err.error_description ?? ""),
);
provider.on("grant.error", (_ctx, err) =>
  console.error("idp grant.error:", err.message, err.error_description ?? ""),
);

server.on("request", provider.callback());
process.on("SIGTERM", () => server.close(() => process.exit(0)));
process.on("SIGINT", () => server.close(() => process.exit(0)));

console.log(JSON.stringify({ issuer }));
