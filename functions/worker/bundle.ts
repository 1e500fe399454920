/**
 * Bundles the ECS worker (functions/worker/main.ts) into one ES module with esbuild, so the image runs plain
 * JavaScript (`node dist/worker/main.mjs`: no TypeScript loader, no source tree at run time).
 *
 *   npx tsx functions/worker/bundle.ts [--out dist/worker]
 *
 * Native packages stay external and come from the image's production node_modules: onnxruntime-node (its
 * binding and the CUDA provider libraries next to it) and sharp (libvips). Everything else is inlined. The
 * local-only packages (the emulators, @vladmandic/face-api, whose weights the worker reads from the model
 * bundle) must not be reachable from the worker; the build fails if one is.
 */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const DEFAULT_OUT = path.join(REPO_ROOT, 'dist', 'worker');
export const EXTERNAL = ['onnxruntime-node', 'sharp'];
/** Development-only packages (devDependencies): bundling one would mean the worker needs it at run time. */
export const FORBIDDEN = [
  's3rver',
  'dynalite',
  'local-aws-sqs',
  '@vladmandic/face-api',
  'tsx',
  '@tensorflow/tfjs',
];

export async function bundleWorker(out = DEFAULT_OUT): Promise<{ file: string; metafile: Metafile }> {
  mkdirSync(out, { recursive: true });
  const file = path.join(out, 'main.mjs');
  const r = await build({
    entryPoints: [path.join(REPO_ROOT, 'functions', 'worker', 'main.ts')],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    metafile: true,
    external: EXTERNAL,
    logLevel: 'warning',
    // CommonJS dependencies bundled into an ES module still call require() for Node built-ins.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  const bad = Object.keys(r.metafile.inputs).filter((p) =>
    FORBIDDEN.some((f) => p.includes(`node_modules/${f}/`)),
  );
  if (bad.length) throw new Error(`the worker bundle pulls in development-only packages: ${bad.join(', ')}`);
  return { file, metafile: r.metafile };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  const out = i > 0 ? path.resolve(process.argv[i + 1]!) : DEFAULT_OUT;
  const { file, metafile } = await bundleWorker(out);
  const bytes = Object.values(metafile.outputs).reduce((a, o) => a + o.bytes, 0);
  console.log(`worker bundled into ${file} (${(bytes / 1e6).toFixed(1)} MB with its source map)`);
}
