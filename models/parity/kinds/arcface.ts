/**
 * Parity handler for kind `arcface`: the L2-normalised IR-SE50 embedding of a pattern input (`feat`)
 * and the gradient of Σ feat·r w.r.t. the input (`grad_input`, r = the case's probe pattern), against
 * the upstream goldens with the fixtures README's bars.
 *
 * The gradient is a VJP seeded with r directly: d(Σ feat·r)/dx = J_featᵀ·r, one Mul/ReduceSum less.
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { toFloat32 } from '../../checkpoint/tensor.js';
import { checkGradient, checkOutput } from '../../fixtures/metrics.js';
import { readNpy } from '../../fixtures/npy.js';
import { pattern } from '../../fixtures/pattern.js';
import { loadSpec } from '../../fixtures/spec.js';
import {
  ARCFACE_DIM,
  ARCFACE_INPUT,
  type ArcFaceWeights,
  buildArcFace,
  loadArcFaceWeights,
} from '../../networks/arcface.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';

interface PatternRef {
  pattern: string;
  shape?: number[];
  lo: number;
  hi: number;
}

function patternRef(c: ParityCase, field: string, shape: number[]): PatternRef {
  const v = c[field] as Partial<PatternRef> | undefined;
  if (
    !v ||
    typeof v !== 'object' ||
    typeof v.pattern !== 'string' ||
    typeof v.lo !== 'number' ||
    typeof v.hi !== 'number'
  )
    throw new FixtureFormatError(`case ${c.name}: "${field}" must be {pattern, shape, lo, hi}`);
  if (v.shape !== undefined && (!Array.isArray(v.shape) || v.shape.join() !== shape.join()))
    throw new FixtureFormatError(
      `case ${c.name}: "${field}.shape" is ${JSON.stringify(v.shape)}, ArcFace needs [${shape}]`,
    );
  return v as PatternRef;
}

/** The case's `expect` map, restricted to known names, each a .npy file name. */
export function expectations(c: ParityCase, known: readonly string[]): Record<string, string> {
  const expect = c['expect'];
  if (!expect || typeof expect !== 'object')
    throw new FixtureFormatError(`case ${c.name}: "expect" is missing`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(expect as Record<string, unknown>)) {
    if (!known.includes(k))
      throw new FixtureFormatError(`case ${c.name}: unknown expectation "${k}" (known: ${known.join(', ')})`);
    if (typeof v !== 'string')
      throw new FixtureFormatError(`case ${c.name}: expectation "${k}" must be a .npy file name`);
    out[k] = v;
  }
  return out;
}

/** A golden array, checked to have `shape`. */
export function golden(c: ParityCase, dir: string, file: string, shape: number[]): Float32Array {
  const t = readNpy(join(dir, file));
  if (t.shape.join() !== shape.join())
    throw new FixtureFormatError(`case ${c.name}: ${file} has shape [${t.shape}], expected [${shape}]`);
  return toFloat32(t);
}

/**
 * Build ArcFace (plus, given a probe, the input gradient of Σ feat·probe), run it once on CPU and
 * return the outputs. Shared by the handler, the tests and the benchmark.
 */
export async function runArcFace(
  weights: ArcFaceWeights,
  input: Float32Array,
  probe?: Float32Array,
  opts: { threads?: number } = {},
): Promise<{ feat: Float32Array; gradInput?: Float32Array }> {
  const g = new E.Graph('arcface');
  const x = g.input('x', [1, 3, ARCFACE_INPUT, ARCFACE_INPUT]);
  const feat = buildArcFace(g, weights, x);
  g.output(feat, 'feat');
  if (probe) g.output(E.grad(feat, [x], g.constant(probe, feat.shape, 'probe'))[0]!, 'grad_input');
  const s = await E.Session.create(E.toBytes(g), {
    provider: 'cpu',
    ...(opts.threads ? { threads: opts.threads } : {}),
  });
  try {
    const out = await s.run({ x: input });
    return { feat: out['feat']!.data, ...(probe ? { gradInput: out['grad_input']!.data } : {}) };
  } finally {
    await s.release();
  }
}

const arcfaceHandler: ParityHandler = async (c: ParityCase, ctx: ParityContext): Promise<ParityCheck[]> => {
  if (typeof c['weights'] !== 'string')
    throw new FixtureFormatError(`case ${c.name}: "weights" must be a spec file name`);
  const expect = expectations(c, ['feat', 'grad_input']);
  const inShape = [1, 3, ARCFACE_INPUT, ARCFACE_INPUT];
  const featShape = [1, ARCFACE_DIM];
  const inRef = patternRef(c, 'input', inShape);
  const input = pattern(inRef.pattern, inShape, inRef.lo, inRef.hi);
  let probe: Float32Array | undefined;
  if (expect['grad_input'] !== undefined) {
    const pr = patternRef(c, 'probe', featShape);
    probe = pattern(pr.pattern, featShape, pr.lo, pr.hi);
  }
  const weights = loadArcFaceWeights(loadSpec(join(ctx.dir, c['weights'])));

  const t0 = performance.now();
  const out = await runArcFace(weights, input, probe);
  ctx.log(
    `${c.name}: ArcFace forward${probe ? '+backward' : ''} built and run in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  const checks: ParityCheck[] = [];
  if (expect['feat'] !== undefined) {
    const r = checkOutput(out.feat, golden(c, ctx.dir, expect['feat'], featShape));
    checks.push({ name: 'feat', pass: r.pass, metrics: { ...r.metrics } });
  }
  if (expect['grad_input'] !== undefined) {
    const r = checkGradient(out.gradInput!, golden(c, ctx.dir, expect['grad_input'], inShape));
    checks.push({ name: 'grad_input', pass: r.pass, metrics: { ...r.metrics } });
  }
  return checks;
};

export default arcfaceHandler;
