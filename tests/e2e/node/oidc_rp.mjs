// openid-client@6 (a certified relying party) against flyteauth's built-in authorization server.
// Driven by tests/e2e/python/test_as_openid_client.py:
//   node oidc_rp.mjs '<json request>'   ->   one JSON line on stdout: {"ok":true,...} | {"ok":false,"error":{...}}
// Requests ({op, issuer, ...}):
//   metadata                                        -> server metadata as openid-client saw it
//   client_credentials {client_id, client_secret, auth: "basic"|"post", scope}
//   auth_url           {client_id, redirect_uri, scope}            -> {url, code_verifier, state}
//   code               {client_id, callback_url, code_verifier, state}
//   refresh            {client_id, client_secret?, refresh_token, scope?}
// Every token response comes back with `verified`: the access token checked by jose against the
// server's JWKS (signature, typ at+jwt, iss = issuer, aud contains the issuer, exp).
import * as client from 'openid-client';
import * as jose from 'jose';

const req = JSON.parse(process.argv[2] ?? '{}');

function clientAuth() {
  if (!req.client_secret) return client.None();
  if (req.auth === 'basic') return client.ClientSecretBasic(req.client_secret);
  return client.ClientSecretPost(req.client_secret);
}

async function discover() {
  return client.discovery(new URL(req.issuer), req.client_id ?? 'flytectl', undefined, clientAuth(), {
    execute: [client.allowInsecureRequests],
    algorithm: 'oauth2',
    timeout: 15,
  });
}

async function verify(config, accessToken) {
  const md = config.serverMetadata();
  const jwks = jose.createRemoteJWKSet(new URL(md.jwks_uri), { timeoutDuration: 10000 });
  const { payload, protectedHeader } = await jose.jwtVerify(accessToken, jwks, {
    issuer: md.issuer,
    audience: md.issuer,
    typ: 'at+jwt',
    requiredClaims: ['exp', 'iat', 'sub', 'jti'],
  });
  return { header: protectedHeader, payload };
}

async function tokenResult(config, tokens) {
  const out = {
    access_token: tokens.access_token,
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    refresh_token: tokens.refresh_token,
    claims_expires_in: tokens.expiresIn?.(),
  };
  out.verified = await verify(config, tokens.access_token);
  return out;
}

async function errorJson(e) {
  // A 401 with WWW-Authenticate (RFC 6749 §5.2, Basic client auth) surfaces as
  // WWWAuthenticateChallengeError before the body is read: read the RFC 6749 body here.
  let body;
  if (e?.response && typeof e.response.json === 'function' && !e.response.bodyUsed) {
    try { body = await e.response.json(); } catch { body = undefined; }
  }
  return {
    body,
    www_authenticate: e?.response?.headers?.get?.('www-authenticate') ?? undefined,
    name: e?.name,
    message: String(e?.message ?? e),
    code: e?.code,
    error: e?.error ?? body?.error,
    error_description: e?.error_description ?? body?.error_description,
    status: e?.status,
    cause: e?.cause && typeof e.cause === 'object' ? { ...e.cause } : e?.cause,
  };
}

async function main() {
  const config = await discover();
  switch (req.op) {
    case 'metadata':
      return { metadata: config.serverMetadata() };
    case 'client_credentials': {
      const params = req.scope ? { scope: req.scope } : {};
      return tokenResult(config, await client.clientCredentialsGrant(config, params));
    }
    case 'auth_url': {
      const code_verifier = client.randomPKCECodeVerifier();
      const code_challenge = await client.calculatePKCECodeChallenge(code_verifier);
      const state = client.randomState();
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: req.redirect_uri,
        scope: req.scope,
        code_challenge,
        code_challenge_method: 'S256',
        state,
      });
      return { url: url.href, code_verifier, state };
    }
    case 'code': {
      const tokens = await client.authorizationCodeGrant(config, new URL(req.callback_url), {
        pkceCodeVerifier: req.code_verifier,
        expectedState: req.state,
      });
      return tokenResult(config, tokens);
    }
    case 'refresh': {
      const params = req.scope ? { scope: req.scope } : undefined;
      return tokenResult(config, await client.refreshTokenGrant(config, req.refresh_token, params));
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

try {
  const result = await main();
  process.stdout.write(JSON.stringify({ ok: true, ...result }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: await errorJson(e) }) + '\n');
}
