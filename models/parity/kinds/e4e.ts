/**
 * Parity handler for kind `e4e`: the e4e encoder's `codes` [1, 18, 512] of a 256×256 pattern input and
 * `wplus = codes + latent_avg`, against the upstream goldens (output bar of the fixtures README).
 * Forward only: FALCO inverts each face once, nothing is differentiated through e4e.
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { checkOutput } from '../../fixtures/metrics.js';
import { loadSpec } from '../../fixtures/spec.js';
import { E4E_INPUT, type E4EWeights, W_DIM, buildE4E, loadE4EWeights } from '../../networks/e4e.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';
import { expectations, golden, named, patternAt, weightsFile } from './common.js';

/** Build the encoder, run it once on CPU, return codes and W+ (shared by handler, tests, benchmark). */
export async function runE4E(
  weights: E4EWeights,
  input: Float32Array,
  opts: { threads?: number } = {},
): Promise<{ codes: Float32Array; wplus: Float32Array }> {
  const g = new E.Graph('e4e');
  const x = g.input('x', [1, 3, E4E_INPUT, E4E_INPUT]);
  const { codes, wplus } = buildE4E(g, weights, x);
  g.output(codes, 'codes');
  g.output(wplus, 'wplus');
  const s = await E.Session.create(E.toBytes(g), {
    provider: 'cpu',
    ...(opts.threads ? { threads: opts.threads } : {}),
  });
  try {
    const out = await s.run({ x: input });
    return { codes: out['codes']!.data, wplus: out['wplus']!.data };
  } finally {
    await s.release();
  }
}

const e4eHandler: ParityHandler = async (c: ParityCase, ctx: ParityContext): Promise<ParityCheck[]> => {
  const expect = expectations(c, ['codes', 'wplus']);
  const input = patternAt(c, 'input', [1, 3, E4E_INPUT, E4E_INPUT], 'e4e needs');
  const weights = loadE4EWeights(loadSpec(join(ctx.dir, weightsFile(c))));

  const t0 = performance.now();
  const out = await runE4E(weights, input);
  ctx.log(`${c.name}: e4e forward built and run in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const shape = [1, weights.styleCount, W_DIM];
  return (['codes', 'wplus'] as const)
    .filter((k) => expect[k] !== undefined)
    .map((k) => named(k, checkOutput(out[k], golden(c, ctx.dir, expect[k]!, shape))));
};

export default e4eHandler;
