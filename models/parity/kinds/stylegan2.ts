/**
 * Parity handler for kind `stylegan2`: G(wp) of FALCO's genforce generator on a pattern W+ code, and
 * d(Σ image·R)/d wp with R = the case's probe pattern (shape of the image). Expectations:
 * `image` (full), `image_subN` (image[:, :, ::N, ::N]), `image_stats` ([mean, std, min, max]) and
 * `grad_wp`.
 *
 * A case may set `"ulp_probes": n` for a gradient that is ill-conditioned at the float32 ulp level (the
 * 1024-px generator: leaky-ReLU masks of near-zero pre-activations flip under any rounding difference, so
 * two correct float32 implementations disagree by more than the 1e-3 network bar). Its `grad_wp` bar is
 * then measured, not assumed: G is run again at n copies of wp nudged by ±1 ulp per element, the largest
 * relative L2 change of our own gradient is the noise floor, and relL2 to the golden must stay within
 * 3× of it (the factor the fixtures README uses for the chaotic step cases), never below 1e-3. The cosine
 * bar stays 0.9999. Measured on an AVX2 machine: floor 2.5e-4–7.2e-4 over three nudges, golden 1.02e-3.
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { TOLERANCES, checkGradient, checkOutput, relL2 } from '../../fixtures/metrics.js';
import { loadSpec } from '../../fixtures/spec.js';
import {
  buildSynthesis,
  loadStyleGAN2Weights,
  type StyleGAN2Weights,
} from '../../networks/stylegan2/index.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';
import { expectations, golden, named, patternAt, weightsFile } from './common.js';

export interface GeneratorRun {
  image: Float32Array;
  gradWp?: Float32Array;
}

/** G (and optionally the probe gradient) built into a fresh graph and opened on CPU, to run at any wp. */
export async function openGenerator(
  weights: StyleGAN2Weights,
  probe?: Float32Array,
  opts: { threads?: number } = {},
): Promise<{ run: (wp: Float32Array) => Promise<GeneratorRun>; release: () => Promise<void> }> {
  const a = weights.arch;
  const g = new E.Graph(`stylegan2_${a.resolution}`);
  const x = g.input('wp', [1, a.numWLayers, a.wDim]);
  const image = buildSynthesis(g, weights, x);
  g.output(image, 'image');
  if (probe) {
    // VJP seeded with R directly: the same as differentiating Σ image·R, one op less.
    g.output(E.grad(image, [x], g.constant(probe, image.shape, 'probe'))[0]!, 'grad_wp');
  }
  const s = await E.Session.create(E.toBytes(g), {
    provider: 'cpu',
    ...(opts.threads ? { threads: opts.threads } : {}),
  });
  return {
    run: async (wp) => {
      const out = await s.run({ wp });
      return { image: out['image']!.data, ...(probe ? { gradWp: out['grad_wp']!.data } : {}) };
    },
    release: () => s.release(),
  };
}

/** Build G (and optionally the probe gradient) into a fresh graph, run it once on CPU. */
export async function runGenerator(
  weights: StyleGAN2Weights,
  wp: Float32Array,
  probe?: Float32Array,
  opts: { threads?: number } = {},
): Promise<GeneratorRun> {
  const gen = await openGenerator(weights, probe, opts);
  try {
    return await gen.run(wp);
  } finally {
    await gen.release();
  }
}

/** image[:, :, ::n, ::n] of an [1, C, R, R] image. */
export function subsample(img: Float32Array, c: number, r: number, n: number): Float32Array {
  const ro = Math.ceil(r / n);
  const out = new Float32Array(c * ro * ro);
  let k = 0;
  for (let ch = 0; ch < c; ch++)
    for (let y = 0; y < r; y += n) for (let x = 0; x < r; x += n) out[k++] = img[(ch * r + y) * r + x]!;
  return out;
}

/** [mean, std (unbiased, torch's default), min, max] in float64. */
export function imageStats(img: Float32Array): Float64Array {
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of img) {
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = sum / img.length;
  let ss = 0;
  for (const v of img) ss += (v - mean) * (v - mean);
  return Float64Array.of(mean, Math.sqrt(ss / (img.length - 1)), min, max);
}

/** wp with every element moved one ulp up or down (a fixed pseudo-random sign per element and seed). */
function nudged(wp: Float32Array, seed: number): Float32Array {
  const out = wp.slice();
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    if (out[i] === 0) continue;
    bits[i] = bits[i]! + (((Math.imul(i, 2654435761) + seed * 97) >>> 7) % 2 ? 1 : -1);
  }
  return out;
}

/** See the file comment: the largest relative L2 change of our gradient under `ulp_probes` 1-ulp nudges. */
async function ulpNoiseFloor(
  c: ParityCase,
  run: (wp: Float32Array) => Promise<GeneratorRun>,
  wp: Float32Array,
  grad: Float32Array,
): Promise<number | undefined> {
  const n = c['ulp_probes'];
  if (n === undefined) return undefined;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1)
    throw new FixtureFormatError(`case ${c.name}: "ulp_probes" must be an integer ≥ 1`);
  let floor = 0;
  for (let seed = 1; seed <= n; seed++)
    floor = Math.max(floor, relL2((await run(nudged(wp, seed))).gradWp!, grad));
  return floor;
}

const stylegan2Handler: ParityHandler = async (c: ParityCase, ctx: ParityContext): Promise<ParityCheck[]> => {
  const res = c['resolution'];
  if (typeof res !== 'number') throw new FixtureFormatError(`case ${c.name}: "resolution" must be a number`);
  const expect = expectations(c, (k) => /^(image|image_sub\d+|image_stats|grad_wp)$/.test(k));
  const weights = loadStyleGAN2Weights(loadSpec(join(ctx.dir, weightsFile(c))), res);
  const a = weights.arch;
  const wpShape = [1, a.numWLayers, a.wDim];
  const imgShape = [1, 3, res, res];
  const wp = patternAt(c, 'input', wpShape, `the ${res}px generator takes`);
  const probe = expect['grad_wp'] !== undefined ? patternAt(c, 'probe', imgShape, 'the image is') : undefined;

  const t0 = performance.now();
  const gen = await openGenerator(weights, probe);
  try {
    const out = await gen.run(wp);
    ctx.log(
      `${c.name}: G${res} forward${probe ? '+backward' : ''} built and run in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    const load = (k: string, shape: number[]) => golden(c, ctx.dir, expect[k]!, shape);
    const checks: ParityCheck[] = [];
    for (const k of Object.keys(expect)) {
      if (k === 'image') checks.push(named(k, checkOutput(out.image, load(k, imgShape))));
      else if (k === 'image_stats') checks.push(named(k, checkOutput(imageStats(out.image), load(k, [4]))));
      else if (k === 'grad_wp') {
        const floor = await ulpNoiseFloor(c, gen.run, wp, out.gradWp!);
        const bars = floor === undefined ? {} : { maxRelL2: Math.max(TOLERANCES.gradRelL2, 3 * floor) };
        const r = checkGradient(out.gradWp!, load(k, wpShape), bars);
        checks.push(
          named(k, floor === undefined ? r : { ...r, metrics: { ...r.metrics, ulpNoiseFloor: floor } }),
        );
      } else {
        const n = Number(k.slice('image_sub'.length));
        if (!(n >= 1)) throw new FixtureFormatError(`case ${c.name}: bad subsampling factor in "${k}"`);
        const ro = Math.ceil(res / n);
        checks.push(named(k, checkOutput(subsample(out.image, 3, res, n), load(k, [1, 3, ro, ro]))));
      }
    }
    return checks;
  } finally {
    await gen.release();
  }
};

export default stylegan2Handler;
