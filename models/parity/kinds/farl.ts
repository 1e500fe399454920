/**
 * Parity handler for kind `farl`: FaRL ViT-B/16 tokens (before ln_post) of a pattern input, and the
 * gradient of Σ tokens·R w.r.t. the input (R = the case's probe pattern), compared with the goldens.
 *
 * The gradient is taken as a VJP seeded with R directly (no explicit sum node): same value, one op less.
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { buildFarl, farlTokens, loadFarlWeights, type FarlWeights } from '../../networks/farl.js';
import { checkGradient, checkOutput } from '../../fixtures/metrics.js';
import { loadSpec } from '../../fixtures/spec.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';
import { expectations, golden, named, patternAt, weightsFile } from './common.js';

/** Build, run and return tokens and input gradient (exported for the benchmark and tests). */
export async function runFarl(
  weights: FarlWeights,
  input: Float32Array,
  probe: Float32Array | undefined,
  opts: { threads?: number } = {},
): Promise<{ tokens: Float32Array; gradInput?: Float32Array }> {
  const c = weights.config;
  const g = new E.Graph('farl');
  const x = g.input('x', [1, 3, c.resolution, c.resolution]);
  const tokens = buildFarl(g, weights, x);
  g.output(tokens, 'tokens');
  if (probe) {
    const seed = g.constant(probe, tokens.shape, 'probe');
    g.output(E.grad(tokens, [x], seed)[0]!, 'grad_input');
  }
  const s = await E.Session.create(E.toBytes(g), {
    provider: 'cpu',
    ...(opts.threads ? { threads: opts.threads } : {}),
  });
  try {
    const out = await s.run({ x: input });
    return { tokens: out['tokens']!.data, ...(probe ? { gradInput: out['grad_input']!.data } : {}) };
  } finally {
    await s.release();
  }
}

const farlHandler: ParityHandler = async (c: ParityCase, ctx: ParityContext): Promise<ParityCheck[]> => {
  const expect = expectations(c, ['tokens', 'grad_input']);
  // Not strict, like upstream's load_state_dict(strict=False): extra visual.* keys are logged, not fatal.
  const weights = loadFarlWeights(loadSpec(join(ctx.dir, weightsFile(c))));
  if (weights.ignored.length) ctx.log(`${c.name}: ignoring unknown weights ${weights.ignored.join(', ')}`);
  const cfg = weights.config;
  const inShape = [1, 3, cfg.resolution, cfg.resolution];
  const tokShape = [1, farlTokens(cfg), cfg.width];
  const input = patternAt(c, 'input', inShape, 'the encoder takes');
  const probe =
    expect['grad_input'] !== undefined ? patternAt(c, 'probe', tokShape, 'the tokens are') : undefined;

  const t0 = performance.now();
  const out = await runFarl(weights, input, probe);
  ctx.log(
    `${c.name}: FaRL forward${probe ? '+backward' : ''} built and run in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  const checks: ParityCheck[] = [];
  if (expect['tokens'] !== undefined)
    checks.push(named('tokens', checkOutput(out.tokens, golden(c, ctx.dir, expect['tokens'], tokShape))));
  if (expect['grad_input'] !== undefined)
    checks.push(
      named('grad_input', checkGradient(out.gradInput!, golden(c, ctx.dir, expect['grad_input'], inShape))),
    );
  return checks;
};

export default farlHandler;
