// Connect calls to flyteauth with @connectrpc/connect-node (createConnectTransport), the
// messages described by a FileDescriptorSet of the published flyteidl protos (no codegen).
//
//   node connect_client.mjs BASE_URL DESCRIPTOR_SET_FILE TOKEN MAX_REQUEST_BYTES
//
// Prints one JSON object: for each case, {ok: true, ...fields} or {code: "<Code name>", message}.
// HTTP/1.1 sends the body chunked (Transfer-Encoding: chunked), as connect-node does.
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

const [baseUrl, fdsFile, token, maxBytesArg] = process.argv.slice(2);
const maxBytes = Number(maxBytesArg);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(fdsFile)));
const service = (name) => {
  const s = registry.getService(name);
  if (!s) throw new Error(`${name} is not in the descriptor set`);
  return s;
};
const AuthMetadata = service("flyteidl.service.AuthMetadataService");
const Identity = service("flyteidl.service.IdentityService");
const Admin = service("flyteidl.service.AdminService");

const transports = {
  h1_binary: createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
  h1_json: createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  h2_binary: createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
  h2_json: createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false }),
};
const bearer = { headers: { authorization: `Bearer ${token}` } };

async function attempt(fn) {
  try {
    return { ok: true, ...(await fn()) };
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: Code[err.code], message: err.rawMessage };
  }
}

const out = {};
for (const [name, transport] of Object.entries(transports)) {
  const meta = createClient(AuthMetadata, transport);
  const identity = createClient(Identity, transport);
  const admin = createClient(Admin, transport);
  out[`${name}_metadata`] = await attempt(async () => {
    const m = await meta.getOAuth2Metadata({});
    return { issuer: m.issuer, tokenEndpoint: m.tokenEndpoint };
  });
  out[`${name}_user_info`] = await attempt(async () => {
    const u = await identity.userInfo({}, bearer);
    return { subject: u.subject };
  });
  out[`${name}_user_info_anonymous`] = await attempt(async () => {
    await identity.userInfo({});
    return {};
  });
  out[`${name}_register`] = await attempt(async () => {
    await admin.registerProject({ project: { id: `node-${name.replace("_", "-")}`, name: `node ${name}` } }, bearer);
    const p = await admin.getProject({ id: `node-${name.replace("_", "-")}` }, bearer);
    return { id: p.id, name: p.name, domains: p.domains.length };
  });
  out[`${name}_unknown_method`] = await attempt(async () => {
    await admin.listExecutions({}, bearer);
    return {};
  });
}

// Streamed (chunked over HTTP/1.1) refused requests: a large body without a token, and a body
// over server.maxRequestBytes with one. The client must read a Connect error, not a reset.
const h1 = createClient(Admin, transports.h1_binary);
const big = (n) => ({ project: { id: "node-big", name: "big", description: "d".repeat(n) } });
out.streamed_unauthenticated = await attempt(async () => {
  await h1.registerProject(big(Math.floor(maxBytes * 0.6)));
  return {};
});
out.streamed_oversized = await attempt(async () => {
  await h1.registerProject(big(maxBytes * 2), bearer);
  return {};
});
// The connection pool still works after both.
out.after_refusals = await attempt(async () => {
  const d = await h1.getDomains({}, bearer);
  return { domains: d.domains.map((x) => x.id) };
});

console.log(JSON.stringify(out));
