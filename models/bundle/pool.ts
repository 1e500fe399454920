/**
 * The fake pool (FALCO's "fake dataset"): z ~ N(0, I) from a seeded generator → mapping → W+ with
 * truncation ψ = 0.7 → G(w) → FaRL embedding. Codes and embeddings are stored in the bundle so that
 * per-face lookup is a cosine nearest neighbour in FaRL space, with no generation at request time.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTensor } from '../checkpoint/tensor.js';
import { writeNpy } from '../fixtures/npy.js';
import { FalcoEngine, W_DIM, type EngineOptions } from '../falco/engine.js';
import {
  BundleError,
  contentId,
  readManifest,
  sha256File,
  writeManifest,
  type BundleManifest,
} from './manifest.js';

/** splitmix32-style PRNG: a 32-bit state, full period, fast; deterministic across platforms. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    z ^= z >>> 15;
    return (z >>> 0) / 4294967296;
  };
}

/** n standard normal samples (Box–Muller over the seeded PRNG). */
export function gaussian(rand: () => number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - rand(); // (0, 1]: log(0) is impossible
    const u2 = rand();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

export interface PoolOptions {
  n: number;
  seed?: number;
  psi?: number;
  engine?: EngineOptions;
  onProgress?: (done: number, total: number) => void;
}

/** Sample the pool into `<bundle>/pool/` and record it in the manifest (replacing any previous pool). */
export async function buildPool(bundleDir: string, o: PoolOptions): Promise<BundleManifest> {
  if (!Number.isInteger(o.n) || o.n < 1 || o.n > 1_000_000)
    throw new BundleError(`pool size must be an integer in 1..1000000, got ${o.n}`);
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed)) throw new BundleError(`pool seed must be an integer, got ${seed}`);
  const engine = await FalcoEngine.open(bundleDir, o.engine);
  try {
    const m = engine.manifest;
    const psi = o.psi ?? m.defaults.truncation;
    const L = engine.L;
    const size = L * W_DIM;
    const codes = new Float32Array(o.n * size);
    let features: Float32Array | undefined;
    let dim = 0;
    const rand = prng(seed);
    for (let i = 0; i < o.n; i++) {
      const wp = await engine.mapping(gaussian(rand, W_DIM), psi);
      codes.set(wp, i * size);
      const img = await engine.render(wp);
      // Features of the image as it would be saved (FALCO extracts them from the written fakes).
      for (let k = 0; k < img.length; k++) img[k] = Math.min(1, Math.max(-1, img[k]!));
      const { farl } = await engine.targets(img);
      if (!features) {
        dim = farl.length;
        features = new Float32Array(o.n * dim);
      }
      let norm = 0;
      for (const v of farl) norm += v * v;
      norm = Math.sqrt(norm) || 1;
      for (let k = 0; k < dim; k++) features[i * dim + k] = farl[k]! / norm;
      o.onProgress?.(i + 1, o.n);
    }
    const dir = join(bundleDir, 'pool');
    await mkdir(dir, { recursive: true });
    await writeNpy(join(dir, 'codes.npy'), makeTensor('float32', [o.n, L, W_DIM], codes));
    await writeNpy(join(dir, 'farl.npy'), makeTensor('float32', [o.n, dim], features!));
    const manifest = await readManifest(bundleDir);
    manifest.pool = {
      n: o.n,
      psi,
      seed,
      codes: 'pool/codes.npy',
      features: 'pool/farl.npy',
      featureDim: dim,
      sha256: {
        codes: await sha256File(join(dir, 'codes.npy')),
        features: await sha256File(join(dir, 'farl.npy')),
      },
    };
    manifest.id = contentId(manifest);
    await writeManifest(bundleDir, manifest);
    return manifest;
  } finally {
    await engine.close();
  }
}
