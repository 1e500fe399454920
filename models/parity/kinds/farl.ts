/**
 * Parity handler for kind `farl`: FaRL ViT-B/16 tokens (before ln_post) of a pattern input, and the
 * gradient of Σ tokens·R w.r.t. the input (R = the case's probe pattern), compared with the goldens.
 *
 * The gradient is taken as a VJP seeded with R directly (no explicit sum node): same value, one op less.
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { buildFarl, farlTokens, loadFarlWeights, type FarlWeights } from '../../networks/farl.js';
import { toFloat32 } from '../../checkpoint/tensor.js';
import { checkGradient, checkOutput } from '../../fixtures/metrics.js';
import { readNpy } from '../../fixtures/npy.js';
import { pattern } from '../../fixtures/pattern.js';
import { loadSpec } from '../../fixtures/spec.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';

interface PatternRef {
  pattern: string;
  shape?: number[];
  lo: number;
  hi: number;
}

function patternRef(c: ParityCase, field: string): PatternRef {
  const v = c[field] as Partial<PatternRef> | undefined;
  if (!v || typeof v.pattern !== 'string' || typeof v.lo !== 'number' || typeof v.hi !== 'number')
    throw new FixtureFormatError(`case ${c.name}: "${field}" must be {pattern, shape, lo, hi}`);
  if (
    v.shape !== undefined &&
    (!Array.isArray(v.shape) || v.shape.some((d) => !Number.isInteger(d) || d <= 0))
  )
    throw new FixtureFormatError(`case ${c.name}: "${field}.shape" must be a list of positive integers`);
  return v as PatternRef;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.join() === b.join();

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
  if (typeof c['weights'] !== 'string')
    throw new FixtureFormatError(`case ${c.name}: "weights" must be a spec file name`);
  const expect = c['expect'] as Record<string, unknown> | undefined;
  if (!expect || typeof expect !== 'object') throw new FixtureFormatError(`case ${c.name}: "expect" missing`);
  for (const [k, v] of Object.entries(expect)) {
    if (k !== 'tokens' && k !== 'grad_input')
      throw new FixtureFormatError(
        `case ${c.name}: unknown farl expectation "${k}" (known: tokens, grad_input)`,
      );
    if (typeof v !== 'string')
      throw new FixtureFormatError(`case ${c.name}: expectation "${k}" must be a .npy file name`);
  }

  // Not strict, like upstream's load_state_dict(strict=False): extra visual.* keys are logged, not fatal.
  const weights = loadFarlWeights(loadSpec(join(ctx.dir, c['weights'])));
  if (weights.ignored.length) ctx.log(`${c.name}: ignoring unknown weights ${weights.ignored.join(', ')}`);
  const cfg = weights.config;
  const inRef = patternRef(c, 'input');
  const inShape = [1, 3, cfg.resolution, cfg.resolution];
  if (inRef.shape && !sameShape(inRef.shape, inShape))
    throw new FixtureFormatError(
      `case ${c.name}: input shape [${inRef.shape}] but the encoder takes [${inShape}]`,
    );
  const tokShape = [1, farlTokens(cfg), cfg.width];
  let probe: Float32Array | undefined;
  if (expect['grad_input'] !== undefined) {
    const pr = patternRef(c, 'probe');
    if (pr.shape && !sameShape(pr.shape, tokShape))
      throw new FixtureFormatError(
        `case ${c.name}: probe shape [${pr.shape}] but the tokens are [${tokShape}]`,
      );
    probe = pattern(
      pr.pattern,
      tokShape.reduce((a, b) => a * b, 1),
      pr.lo,
      pr.hi,
    );
  }
  const input = pattern(inRef.pattern, 3 * cfg.resolution ** 2, inRef.lo, inRef.hi);

  const t0 = performance.now();
  const out = await runFarl(weights, input, probe);
  ctx.log(
    `${c.name}: FaRL forward${probe ? '+backward' : ''} built and run in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  const checks: ParityCheck[] = [];
  const load = (k: string, shape: number[]) => {
    const npy = readNpy(join(ctx.dir, expect[k] as string));
    if (!sameShape(npy.shape, shape))
      throw new FixtureFormatError(
        `case ${c.name}: ${expect[k]} has shape [${npy.shape}], expected [${shape}]`,
      );
    return toFloat32(npy);
  };
  if (expect['tokens'] !== undefined) {
    const r = checkOutput(out.tokens, load('tokens', tokShape));
    checks.push({ name: 'tokens', pass: r.pass, metrics: { ...r.metrics } });
  }
  if (expect['grad_input'] !== undefined) {
    const r = checkGradient(out.gradInput!, load('grad_input', inShape));
    checks.push({ name: 'grad_input', pass: r.pass, metrics: { ...r.metrics } });
  }
  return checks;
};

export default farlHandler;
