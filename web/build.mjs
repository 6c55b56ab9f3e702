// Builds the client into dist/: the bundle and stylesheet under dist/assets/ with content hashes
// in their names (the broker serves them with a long cache lifetime), and dist/index.html naming
// them.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "assets"), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: "src/main.js" },
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  sourcemap: "linked",
  outdir: "dist/assets",
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});

const entry = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint === "src/main.js");
if (!entry) throw new Error("build: no output for src/main.js");
const [jsPath, output] = entry;
const asset = (path) => "/" + relative(dist, join(root, path)).split("\\").join("/");
const tags = [`<script type="module" src="${asset(jsPath)}"></script>`];
if (output.cssBundle) tags.unshift(`<link rel="stylesheet" href="${asset(output.cssBundle)}">`);

const template = await readFile(join(root, "index.html"), "utf8");
if (!template.includes("<!-- assets -->")) throw new Error("build: index.html lacks <!-- assets -->");
await writeFile(join(dist, "index.html"), template.replace("<!-- assets -->", tags.join("\n  ")));
console.log(`build: ${relative(root, dist)}/index.html, ${asset(jsPath)}`);
