// Mints client_credentials access tokens (all distinct: each has its own jti/iat) and writes
// them one per line. Used by the memory phase of make bench.
//
//   node bench/mint.mjs <token-url> <basic-b64> <count> <concurrency> <out-file>
import fs from 'node:fs';

const [url, basic, countArg, concArg, out] = process.argv.slice(2);
const count = Number(countArg);
const concurrency = Number(concArg);
const tokens = new Array(count);
let next = 0;

async function worker() {
  for (;;) {
    const i = next;
    next += 1;
    if (i >= count) return;
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials&scope=all',
    });
    if (res.status !== 200) throw new Error(`token endpoint answered ${res.status}`);
    tokens[i] = (await res.json()).access_token;
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, worker));
const secs = (performance.now() - t0) / 1000;
if (new Set(tokens).size !== count) throw new Error('tokens are not all distinct');
fs.writeFileSync(out, `${tokens.join('\n')}\n`);
console.log(JSON.stringify({ minted: count, seconds: Number(secs.toFixed(2)), per_second: Math.round(count / secs) }));
