// oidc-provider@9 as the baseline for flyteauth's token endpoint (make bench).
//
//   node server.mjs <port> [workers]
//
// One confidential client `bench` / `bench-secret` (client_secret_basic) with the
// client_credentials grant and the `all` scope. Access tokens are RS256 JWTs (2048-bit key),
// via resourceIndicators: every request gets the default resource, whose accessTokenFormat is
// "jwt" — the same shape flyteauth issues. `workers` > 1 runs that many processes with
// node:cluster sharing the port (the key is generated once, in the primary).
//
// For the authorization-code and refresh phase of make bench there is also a public client
// `bench-public` (token_endpoint_auth_method none, PKCE S256 — required for public clients,
// redirect http://localhost:53593/callback, grants authorization_code + refresh_token, scope
// `all`): the same shape as flyteauth's `flytectl`. The bench requests scope `all` without
// `openid`, so the token response is an RS256 JWT access token for the default resource plus
// an opaque refresh token, and no id_token — what flyteauth issues. `issueRefreshToken` is
// true for it without offline_access; refresh tokens rotate on every use (oidc-provider's
// default for public clients) and do not end with the browser session (`expiresWithSession`
// false, as flyteauth's). Log in once with GET /interaction/<uid>: a bench-only route that
// ends the login for the fixed account `bench` and grants `all` on the resource, so later
// authorization requests with the `_session` cookie get a code at once. Everything is kept in
// oidc-provider's default in-memory adapter (per process).
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3100);
const workers = Number(process.argv[3] || 1);
const issuer = `http://127.0.0.1:${port}`;
const resource = `${issuer}/api`;
const PUBLIC_CLIENT = 'bench-public';
// The same profile flyteauth puts in a user's access token (`user_info`, `groups`).
const PROFILE = {
  subject: 'bench',
  name: 'bench',
  preferred_username: 'bench',
  email: 'bench@localhost',
  groups: ['bench'],
};

// BENCH_ALG=ES256 signs the access tokens with a P-256 key instead (make bench's phase 4
// with AC_ALGS containing ES256: both servers on the same algorithm).
const ALG = process.env.BENCH_ALG || 'RS256';
if (!['RS256', 'ES256'].includes(ALG)) throw new Error(`BENCH_ALG: ${ALG} (RS256 or ES256)`);

// The signing keys: always an RSA key (oidc-provider's defaults, such as ID tokens, need
// RS256), and for ES256 a P-256 key, which the access tokens are then signed with.
function makeJwks() {
  const key = (type, options, alg) => ({
    ...crypto.generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }),
    kid: `bench-${alg.toLowerCase()}`,
    alg,
    use: 'sig',
  });
  const keys = [key('rsa', { modulusLength: 2048 }, 'RS256')];
  if (ALG === 'ES256') keys.push(key('ec', { namedCurve: 'P-256' }, 'ES256'));
  return keys;
}

function serve(keys) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'bench',
      client_secret: 'bench-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'all',
    }, {
      client_id: PUBLIC_CLIENT,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://localhost:53593/callback'],
      scope: 'all',
    }],
    async findAccount(_ctx, sub) {
      return { accountId: sub, async claims() { return { sub }; } };
    },
    issueRefreshToken: async (_ctx, client, code) => client.clientId === PUBLIC_CLIENT
      || (client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access')),
    expiresWithSession: async (ctx, code) => ctx.oidc.client.clientId !== PUBLIC_CLIENT
      && !code.scopes.has('offline_access'),
    extraTokenClaims: async (_ctx, token) => (token.kind === 'AccessToken' && token.accountId
      ? { user_info: PROFILE, groups: PROFILE.groups }
      : undefined),
    jwks: { keys },
    scopes: ['all'],
    // flyteauth's defaults: access token 30m, refresh token 1h, code 5m; session 168h.
    ttl: {
      ClientCredentials: 1800,
      AccessToken: 1800,
      RefreshToken: 3600,
      AuthorizationCode: 300,
      Grant: 7 * 24 * 3600,
      Session: 7 * 24 * 3600,
      Interaction: 600,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'all',
          audience: resource,
          accessTokenTTL: 1800,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: ALG } },
        }),
      },
    },
  });
  const app = provider.callback();
  http.createServer((req, res) => {
    if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
      finishLogin(provider, req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
    } else {
      app(req, res);
    }
  }).listen(port, '127.0.0.1');
}

// Bench-only interaction: log `bench` in and grant `all` on the resource, no form.
async function finishLogin(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const grant = new provider.Grant({ accountId: 'bench', clientId: details.params.client_id });
  grant.addOIDCScope('all');
  grant.addResourceScope(resource, 'all');
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId: 'bench' },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

if (workers > 1 && cluster.isPrimary) {
  const keys = makeJwks();
  for (let i = 0; i < workers; i += 1) cluster.fork({ BENCH_JWKS: JSON.stringify(keys) });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
  console.log(`oidc-provider: ${workers} workers on ${issuer}`);
} else if (process.env.BENCH_JWKS) {
  serve(JSON.parse(process.env.BENCH_JWKS));
} else {
  serve(makeJwks());
  console.log(`oidc-provider: 1 process on ${issuer}`);
}
