/**
 * The demo bundle (`npm run models -- demo`): pattern-weight checkpoints in the official formats at
 * DEMO_SIZES are written to a temporary directory and built by exactly the production path
 * (`buildFromCheckpoints`), then a small fake pool is sampled. Deterministic: the same code gives the
 * same bytes and the same bundle id. Its images are NOT photorealistic (untrained weights): it exists
 * so the product runs end to end without the licensed checkpoints.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../fixtures/paths.js';
import type { EngineOptions } from '../falco/engine.js';
import { buildFromCheckpoints } from './build.js';
import { DEMO_SIZES, writeDemoCheckpoints, type NetworkSizes } from './demo-weights.js';
import { MANIFEST_FILE, type BundleManifest } from './manifest.js';
import { buildPool } from './pool.js';

export const DEFAULT_BUNDLES_DIR = join(REPO_ROOT, 'var', 'bundles');
export const DEFAULT_DEMO_BUNDLE = join(DEFAULT_BUNDLES_DIR, 'demo');
export const DEMO_POOL_SIZE = 32;

export interface DemoOptions {
  outDir?: string;
  poolSize?: number;
  sizes?: NetworkSizes;
  log?: (msg: string) => void;
  onPoolProgress?: (done: number, total: number) => void;
  engine?: EngineOptions;
}

export async function buildDemoBundle(o: DemoOptions = {}): Promise<BundleManifest> {
  const outDir = o.outDir ?? DEFAULT_DEMO_BUNDLE;
  const tmp = await mkdtemp(join(tmpdir(), 'falco-demo-ckpt-'));
  try {
    o.log?.('writing pattern-weight checkpoints (official layouts, demo sizes)');
    await writeDemoCheckpoints(tmp, o.sizes ?? DEMO_SIZES);
    await buildFromCheckpoints({
      falcoDir: tmp,
      outDir,
      name: 'demo',
      demo: true,
      ...(o.log ? { log: o.log } : {}),
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  o.log?.('sampling the fake pool');
  return buildPool(outDir, {
    n: o.poolSize ?? DEMO_POOL_SIZE,
    seed: 0,
    ...(o.engine ? { engine: o.engine } : {}),
    ...(o.onPoolProgress ? { onProgress: o.onPoolProgress } : {}),
  });
}

/**
 * The demo bundle at `dir`, built first if it is not there (a fresh checkout): what `npm start` and
 * `npm run cli` do on first use so nothing needs a separate setup step. Returns true when it built.
 */
export async function ensureDemoBundle(
  dir: string = DEFAULT_DEMO_BUNDLE,
  o: Omit<DemoOptions, 'outDir'> = {},
): Promise<boolean> {
  if (existsSync(join(dir, MANIFEST_FILE))) return false;
  await buildDemoBundle({ ...o, outDir: dir });
  return true;
}
