// Bundle one prepared app source tree with one bundler, the way that bundler is used in production.
//
//   node tools/bundle.mjs <bundler> <srcDir> <outDir> <publicPath> [buildId]
//
// srcDir holds main.js (the entry) and index.html (the page, whose script tag points at ./main.js).
// outDir receives the deployed site root: index.html plus the bundles under publicPath, each with
// its .map beside it. Prints one JSON line: {bundler, version, scripts, sourceMappingURL, ms}.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(import.meta.url);
const [bundler, srcDir, outDir, publicPath, buildId] = process.argv.slice(2);
if (!bundler || !srcDir || !outDir || !publicPath) {
  console.error("usage: bundle.mjs <bundler> <srcDir> <outDir> <publicPath> [buildId]");
  process.exit(2);
}
const src = path.resolve(srcDir);
const out = path.resolve(outDir);
const assetDir = path.join(out, publicPath.replace(/^\/+/, ""));
const entry = path.join(src, "main.js");
const define = { "process.env.NODE_ENV": JSON.stringify("production") };

function rm(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
}

// index.html from the source page: the dev script tag replaced by the built ones.
function writePage(scripts, moduleScripts) {
  const page = fs.readFileSync(path.join(src, "index.html"), "utf8");
  const type = moduleScripts ? ' type="module"' : "";
  const tags = scripts.map((s) => `<script${type} src="${publicPath}${s}"></script>`).join("\n");
  const html = page.replace(/<script type="module" src="\.\/main\.js"><\/script>/, tags);
  if (html === page) throw new Error("index.html has no <script type=module src=./main.js> tag");
  fs.writeFileSync(path.join(out, "index.html"), html);
}

function version(pkg) {
  return require(`${pkg}/package.json`).version;
}

async function esbuild() {
  const esb = require("esbuild");
  rm(out);
  const result = await esb.build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    splitting: true,
    format: "esm",
    target: "es2019",
    sourcemap: "linked",
    outdir: assetDir,
    entryNames: "[name]-[hash]",
    chunkNames: "chunk-[hash]",
    metafile: true,
    define,
    logLevel: "error",
  });
  const outputs = Object.entries(result.metafile.outputs);
  const main = outputs.find(([, o]) => o.entryPoint && path.resolve(o.entryPoint) === entry);
  writePage([path.relative(assetDir, path.resolve(main[0]))], true);
  return { version: version("esbuild"), sourceMappingURL: true };
}

async function rollup() {
  const { rollup: roll } = await import("rollup");
  const { nodeResolve } = await import("@rollup/plugin-node-resolve");
  const commonjs = (await import("@rollup/plugin-commonjs")).default;
  const terser = (await import("@rollup/plugin-terser")).default;
  const replace = (await import("@rollup/plugin-replace")).default;
  rm(out);
  const bundle = await roll({
    input: { main: entry },
    plugins: [
      replace({ preventAssignment: true, values: define }),
      nodeResolve({ browser: true }),
      commonjs(),
    ],
    onwarn: () => {},
  });
  const { output } = await bundle.write({
    dir: assetDir,
    format: "es",
    entryFileNames: "[name]-[hash].js",
    chunkFileNames: "[name]-[hash].js",
    sourcemap: true,
    plugins: [terser()],
  });
  const main = output.find((o) => o.type === "chunk" && o.isEntry);
  writePage([main.fileName], true);
  return { version: version("rollup"), sourceMappingURL: true };
}

async function vite() {
  const { build } = await import("vite");
  rm(out);
  const assetsDir = publicPath.replace(/^\/+|\/+$/g, "");
  await build({
    root: src,
    base: "/",
    logLevel: "error",
    configFile: false,
    build: {
      outDir: out,
      emptyOutDir: true,
      assetsDir,
      sourcemap: "hidden",
      manifest: false,
    },
  });
  const html = fs.readFileSync(path.join(out, "index.html"), "utf8");
  const scripts = [...html.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]);
  return { version: `${version("vite")} (rolldown ${version("rolldown")})`, sourceMappingURL: false, scripts };
}

async function webpack() {
  const wp = require("webpack");
  rm(out);
  const nextLike = publicPath.startsWith("/_next/");
  const config = {
    mode: "production",
    context: src,
    entry: { main: entry },
    devtool: "hidden-source-map",
    output: {
      path: assetDir,
      publicPath,
      // Next.js-like: the page entry under chunks/pages/, runtime and framework under chunks/.
      filename: nextLike
        ? (data) => (data.chunk.name === "main" ? "chunks/pages/index-[contenthash:16].js" : "chunks/[name]-[contenthash:16].js")
        : "[name].[contenthash:8].js",
      chunkFilename: nextLike ? "chunks/[id]-[contenthash:16].js" : "[id].[contenthash:8].chunk.js",
      clean: true,
    },
    optimization: {
      splitChunks: { chunks: "all", cacheGroups: { vendor: { test: /node_modules/, name: nextLike ? "framework" : "vendors", priority: 10 } } },
      runtimeChunk: nextLike ? { name: "webpack" } : "single",
    },
    performance: { hints: false },
    plugins: [new wp.DefinePlugin(define)],
    infrastructureLogging: { level: "error" },
  };
  const stats = await new Promise((resolve, reject) =>
    wp(config, (err, s) => (err ? reject(err) : s.hasErrors() ? reject(new Error(s.toString("errors-only"))) : resolve(s))),
  );
  const json = stats.toJson({ all: false, entrypoints: true });
  const files = json.entrypoints.main.assets.map((a) => a.name).filter((n) => n.endsWith(".js"));
  writePage(files, false);
  return { version: version("webpack"), sourceMappingURL: false };
}

async function parcel() {
  const { Parcel } = await import("@parcel/core");
  rm(out);
  const cacheDir = path.join(path.dirname(out), `.parcel-cache-${path.basename(out)}`);
  const bundler = new Parcel({
    entries: path.join(src, "index.html"),
    // The stock config, plus: inline <script type="text/template"> / "text/ng-template" page
    // templates (Backbone, AngularJS) stay as they are instead of failing the build.
    config: path.join(path.dirname(new URL(import.meta.url).pathname), ".parcelrc"),
    mode: "production",
    // The Parcel CLI sets NODE_ENV for a production build; the API leaves it to the caller
    // (without this, React, Vue and immer are bundled in their development builds).
    env: { ...process.env, NODE_ENV: "production" },
    shouldDisableCache: true,
    cacheDir,
    defaultTargetOptions: {
      distDir: out,
      publicUrl: publicPath,
      sourceMaps: true,
      shouldOptimize: true,
      shouldScopeHoist: true,
    },
    logLevel: "error",
  });
  await bundler.run();
  fs.rmSync(cacheDir, { recursive: true, force: true });
  // Parcel writes every bundle beside index.html; move them under the public path so the layout
  // matches the URLs it wrote into the page.
  if (publicPath !== "/") {
    fs.mkdirSync(assetDir, { recursive: true });
    for (const f of fs.readdirSync(out)) {
      if (f !== "index.html" && fs.statSync(path.join(out, f)).isFile()) {
        fs.renameSync(path.join(out, f), path.join(assetDir, f));
      }
    }
  }
  const html = fs.readFileSync(path.join(out, "index.html"), "utf8");
  const scripts = [...html.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]);
  return { version: version("@parcel/core"), sourceMappingURL: true, scripts };
}

const bundlers = { esbuild, rollup, vite, webpack, parcel };
const started = Date.now();
try {
  const info = await bundlers[bundler]();
  const files = [];
  const walk = (d) => {
    for (const f of fs.readdirSync(d)) {
      const p = path.join(d, f);
      if (fs.statSync(p).isDirectory()) walk(p);
      else files.push(path.relative(out, p));
    }
  };
  walk(out);
  console.log(JSON.stringify({ bundler, ...info, files: files.sort(), ms: Date.now() - started }));
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
}
