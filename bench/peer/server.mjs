// oidc-provider@9 as the baseline for flyteauth's token endpoint (make bench).
//
//   node server.mjs <port> [workers]
//
// One confidential client `bench` / `bench-secret` (client_secret_basic) with the
// client_credentials grant and the `all` scope. Access tokens are RS256 JWTs (2048-bit key),
// via resourceIndicators: every request gets the default resource, whose accessTokenFormat is
// "jwt" — the same shape flyteauth issues. `workers` > 1 runs that many processes with
// node:cluster sharing the port (the key is generated once, in the primary).
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3100);
const workers = Number(process.argv[3] || 1);
const issuer = `http://127.0.0.1:${port}`;
const resource = `${issuer}/api`;

function makeJwk() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', alg: 'RS256', use: 'sig' };
}

function serve(jwk) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'bench',
      client_secret: 'bench-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'all',
    }],
    jwks: { keys: [jwk] },
    scopes: ['all'],
    ttl: { ClientCredentials: 1800 },
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
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.listen(port, '127.0.0.1');
}

if (workers > 1 && cluster.isPrimary) {
  const jwk = makeJwk();
  for (let i = 0; i < workers; i += 1) cluster.fork({ BENCH_JWK: JSON.stringify(jwk) });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
  console.log(`oidc-provider: ${workers} workers on ${issuer}`);
} else if (process.env.BENCH_JWK) {
  serve(JSON.parse(process.env.BENCH_JWK));
} else {
  serve(makeJwk());
  console.log(`oidc-provider: 1 process on ${issuer}`);
}
