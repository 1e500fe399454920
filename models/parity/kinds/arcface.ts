/**
 * Parity handler for kind `arcface`: the L2-normalised IR-SE50 embedding of a pattern input (`feat`)
 * and the gradient of Σ feat·r w.r.t. the input (`grad_input`, r = the case's probe pattern), against
 * the upstream goldens with the fixtures README's bars.
 *
 * The gradient is a VJP seeded with r directly: d(Σ feat·r)/dx = J_featᵀ·r, one Mul/ReduceSum less.
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { checkGradient, checkOutput } from '../../fixtures/metrics.js';
import { loadSpec } from '../../fixtures/spec.js';
import {
  ARCFACE_DIM,
  ARCFACE_INPUT,
  type ArcFaceWeights,
  buildArcFace,
  loadArcFaceWeights,
} from '../../networks/arcface.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';
import { expectations, golden, named, patternAt, weightsFile } from './common.js';

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
  const expect = expectations(c, ['feat', 'grad_input']);
  const inShape = [1, 3, ARCFACE_INPUT, ARCFACE_INPUT];
  const featShape = [1, ARCFACE_DIM];
  const input = patternAt(c, 'input', inShape, 'ArcFace needs');
  const probe =
    expect['grad_input'] !== undefined ? patternAt(c, 'probe', featShape, 'ArcFace needs') : undefined;
  const weights = loadArcFaceWeights(loadSpec(join(ctx.dir, weightsFile(c))));

  const t0 = performance.now();
  const out = await runArcFace(weights, input, probe);
  ctx.log(
    `${c.name}: ArcFace forward${probe ? '+backward' : ''} built and run in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  const checks: ParityCheck[] = [];
  if (expect['feat'] !== undefined) {
    checks.push(named('feat', checkOutput(out.feat, golden(c, ctx.dir, expect['feat'], featShape))));
  }
  if (expect['grad_input'] !== undefined) {
    checks.push(
      named('grad_input', checkGradient(out.gradInput!, golden(c, ctx.dir, expect['grad_input'], inShape))),
    );
  }
  return checks;
};

export default arcfaceHandler;
