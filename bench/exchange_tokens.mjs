// A Kubernetes-shaped service-account token issuer for the token-exchange phase of make bench:
// writes an ES256 JWKS (the issuer's public key) and <count> distinct subject tokens, one per
// line (each is accepted once, so every request of a run needs its own). No dependencies:
// node's crypto signs (ECDSA P-256, IEEE P1363 signatures as JWS wants).
//
//   node bench/exchange_tokens.mjs <issuer> <jwks-out> <key-out> <count> <tokens-out>
//   (reuses <key-out> when it exists, so several token files share one JWKS)
import crypto from 'node:crypto';
import fs from 'node:fs';

const [issuer, jwksOut, keyOut, countArg, out] = process.argv.slice(2);
const count = Number(countArg);
let privateKey;
if (fs.existsSync(keyOut)) {
  privateKey = crypto.createPrivateKey(fs.readFileSync(keyOut));
} else {
  ({ privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  fs.writeFileSync(keyOut, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}
const jwk = crypto.createPublicKey(privateKey).export({ format: 'jwk' });
const kid = crypto.createHash('sha256').update(jwk.x + jwk.y).digest('base64url');
fs.writeFileSync(jwksOut, JSON.stringify({ keys: [{ ...jwk, kid, use: 'sig', alg: 'ES256' }] }));

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const header = b64({ alg: 'ES256', typ: 'JWT', kid });
const now = Math.floor(Date.now() / 1000);
const lines = [];
for (let i = 0; i < count; i += 1) {
  const claims = {
    iss: issuer, sub: 'system:serviceaccount:flyte:flytepropeller', aud: ['flyteauth'],
    iat: now, nbf: now, exp: now + 3600, jti: crypto.randomUUID(),
    'kubernetes.io': { namespace: 'flyte', serviceaccount: { name: 'flytepropeller', uid: 'u' },
      pod: { name: 'flytepropeller-0', uid: 'p' } },
  };
  const input = `${header}.${b64(claims)}`;
  const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  lines.push(`${input}.${sig.toString('base64url')}`);
}
fs.writeFileSync(out, lines.join('\n') + '\n');
