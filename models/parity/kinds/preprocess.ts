/**
 * Parity handler for kind `preprocess`: FALCO's `id112` and `farl224` pipelines on a pattern image,
 * compared with torchvision's outputs (expectations named after the pipelines).
 */
import * as E from '../../engine/index.js';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { checkOutput } from '../../fixtures/metrics.js';
import { pattern } from '../../fixtures/pattern.js';
import { FARL_SIZE, ID_SIZE, farl224, id112 } from '../../networks/preprocess.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';
import { expectations, golden, named, patternRef } from './common.js';

const PIPELINES = {
  id112: { fn: id112, size: ID_SIZE },
  farl224: { fn: farl224, size: FARL_SIZE },
} as const;
type Pipeline = keyof typeof PIPELINES;

const preprocessHandler: ParityHandler = async (
  c: ParityCase,
  ctx: ParityContext,
): Promise<ParityCheck[]> => {
  const ref = patternRef(c, 'input');
  const shape = ref.shape;
  if (!shape || shape.length !== 4 || shape[1] !== 3)
    throw new FixtureFormatError(
      `case ${c.name}: "input.shape" must be [N, 3, H, W], got ${JSON.stringify(shape)}`,
    );
  const expect = expectations(c, Object.keys(PIPELINES));

  const g = new E.Graph('preprocess');
  const x = g.input('x', shape);
  const names = Object.keys(expect) as Pipeline[];
  for (const k of names) g.output(PIPELINES[k].fn(x), k);
  const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
  let out: Record<string, E.Output>;
  try {
    out = await s.run({ x: pattern(ref.pattern, shape, ref.lo, ref.hi) });
  } finally {
    await s.release();
  }
  return names.map((k) => {
    const size = PIPELINES[k].size;
    const want = golden(c, ctx.dir, expect[k]!, [shape[0]!, 3, size, size]);
    ctx.log(`${c.name}: ${k} computed`);
    return named(k, checkOutput(out[k]!.data, want));
  });
};

export default preprocessHandler;
