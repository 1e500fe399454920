/**
 * Parity handler for kind `preprocess`: FALCO's `id112` and `farl224` pipelines on a pattern image,
 * compared with torchvision's outputs (expectations named after the pipelines).
 */
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { checkOutput } from '../../fixtures/metrics.js';
import { readNpy } from '../../fixtures/npy.js';
import { pattern } from '../../fixtures/pattern.js';
import { FARL_SIZE, ID_SIZE, farl224, id112 } from '../../networks/preprocess.js';
import type { ParityCase, ParityCheck, ParityContext, ParityHandler } from '../types.js';

const named = (name: string, r: { pass: boolean; metrics: object }): ParityCheck => ({
  name,
  pass: r.pass,
  metrics: { ...(r.metrics as Record<string, number>) },
});

const PIPELINES = {
  id112: { fn: id112, size: ID_SIZE },
  farl224: { fn: farl224, size: FARL_SIZE },
} as const;
type Pipeline = keyof typeof PIPELINES;

const preprocessHandler: ParityHandler = async (
  c: ParityCase,
  ctx: ParityContext,
): Promise<ParityCheck[]> => {
  const input = c['input'] as { pattern?: unknown; shape?: unknown; lo?: unknown; hi?: unknown } | undefined;
  if (
    !input ||
    typeof input.pattern !== 'string' ||
    typeof input.lo !== 'number' ||
    typeof input.hi !== 'number' ||
    !Array.isArray(input.shape) ||
    input.shape.length !== 4 ||
    input.shape.some((d) => !Number.isInteger(d) || d <= 0)
  )
    throw new FixtureFormatError(`case ${c.name}: "input" must be {pattern, shape: [N, 3, H, W], lo, hi}`);
  const shape = input.shape as number[];
  if (shape[1] !== 3)
    throw new FixtureFormatError(`case ${c.name}: input must have 3 channels, got [${shape}]`);
  const expect = c['expect'] as Record<string, unknown> | undefined;
  if (!expect || typeof expect !== 'object') throw new FixtureFormatError(`case ${c.name}: "expect" missing`);
  for (const [k, v] of Object.entries(expect)) {
    if (!(k in PIPELINES))
      throw new FixtureFormatError(
        `case ${c.name}: unknown preprocess expectation "${k}" (known: id112, farl224)`,
      );
    if (typeof v !== 'string')
      throw new FixtureFormatError(`case ${c.name}: expectation "${k}" must be a .npy file name`);
  }

  const g = new E.Graph('preprocess');
  const x = g.input('x', shape);
  const names = Object.keys(expect) as Pipeline[];
  for (const k of names) g.output(PIPELINES[k].fn(x), k);
  const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
  let out: Record<string, E.Output>;
  try {
    out = await s.run({ x: pattern(input.pattern, shape, input.lo, input.hi) });
  } finally {
    await s.release();
  }
  return names.map((k) => {
    const size = PIPELINES[k].size;
    const want = [shape[0]!, 3, size, size];
    const npy = readNpy(join(ctx.dir, expect[k] as string));
    if (npy.shape.join() !== want.join())
      throw new FixtureFormatError(
        `case ${c.name}: ${expect[k]} has shape [${npy.shape}], expected [${want}]`,
      );
    ctx.log(`${c.name}: ${k} computed`);
    return named(k, checkOutput(out[k]!.data, npy));
  });
};

export default preprocessHandler;
