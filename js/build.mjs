// Builds the client and the pages served by longpoll serve.
//
//   node build.mjs              dist/ (the npm package) and ../web/dist/ (embedded in the binary)
//   node build.mjs --out DIR    the pages into DIR instead of ../web/dist (js/check-build.sh)
//   node build.mjs --size       also print the client's size, minified and gzipped
//
// The output depends only on src/ and the locked esbuild and typescript
// versions, so CI can check that the committed web/dist matches.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outIdx = args.indexOf("--out");
const web = outIdx >= 0 ? args[outIdx + 1] : join(here, "..", "web", "dist");
const pkg = join(here, "dist");
const src = join(here, "src");

// Type-check everything, then emit the package's declarations.
const tsc = join(here, "node_modules", "typescript", "bin", "tsc");
execFileSync(process.execPath, [tsc, "-p", here], { stdio: "inherit" });
rmSync(pkg, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, "--declaration", "--emitDeclarationOnly", "--target", "ES2022", "--lib", "ES2022,DOM",
  "--moduleResolution", "Bundler", "--module", "ESNext", "--strict", "--skipLibCheck", "--outDir", pkg, join(src, "longpoll.ts")], { stdio: "inherit" });

const common = { bundle: true, format: "esm", target: ["es2022"], platform: "neutral", legalComments: "none", logLevel: "warning" };

// The npm package: readable ESM; the bundler of the app minifies it.
await build({ ...common, entryPoints: [join(src, "longpoll.ts")], outfile: join(pkg, "longpoll.js") });

// The pages: the client at /longpoll.js, the pages' scripts in /assets/
// importing it by a relative path, so a path prefix in front works.
rmSync(web, { recursive: true, force: true });
mkdirSync(join(web, "assets"), { recursive: true });
await build({ ...common, minify: true, entryPoints: [join(src, "longpoll.ts")], outfile: join(web, "longpoll.js") });
const shareClient = {
  name: "share-client",
  setup(b) {
    b.onResolve({ filter: /^\.\/longpoll(\.ts)?$/ }, () => ({ path: "../longpoll.js", external: true }));
  },
};
await build({ ...common, minify: true, plugins: [shareClient], entryPoints: [join(src, "demo.ts"), join(src, "dashboard.ts")], outdir: join(web, "assets") });
await build({ ...common, minify: true, entryPoints: [join(src, "app.css")], outfile: join(web, "assets", "app.css"), loader: { ".css": "css" } });
for (const f of ["index.html", "dashboard.html"]) copyFileSync(join(src, f), join(web, f));
writeFileSync(join(web, "README"), "Built by js/build.mjs from js/src; do not edit. Check: js/check-build.sh\n");

if (args.includes("--size")) {
  const min = readFileSync(join(web, "longpoll.js"));
  console.log(`longpoll.js: ${min.length} bytes minified, ${gzipSync(min, { level: 9 }).length} bytes minified+gzipped`);
}
