// Bundles src/app.ts into dist/app.js and copies src/index.html to dist/index.html.
// Both outputs are committed: the flyteauth binary embeds them (include_str!), so building
// the server never needs node. `npm ci && npm run build` (or `make console`) rebuilds them.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

const here = new URL(".", import.meta.url);
await mkdir(new URL("dist/", here), { recursive: true });
await build({
  entryPoints: [new URL("src/app.ts", here).pathname],
  outfile: new URL("dist/app.js", here).pathname,
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  platform: "browser",
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
await copyFile(new URL("src/index.html", here), new URL("dist/index.html", here));
