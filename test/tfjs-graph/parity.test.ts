/**
 * The tfjs graph-model converter against tfjs itself (`tf.loadGraphModel` + `execute`, CPU backend, cached per
 * machine): the recognizers we use, plus two detector families to keep the converter generic (SAME padding,
 * fused convs with Prelu, MaxPool, Pad, DepthToSpace, folded Shape/StridedSlice/Pack chains).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  GraphModelError,
  GraphModelSession,
  convertGraphModel,
  readGraphModel,
} from '../../models/tfjs-graph/index.js';
import { HUMAN_MODELS_DIR, oracleExecute } from './oracle.js';

/** Deterministic pseudo-random input in [lo, hi). */
function input(n: number, lo: number, hi: number, seed = 1): Float32Array {
  const x = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    x[i] = lo + ((hi - lo) * s) / 0x7fffffff;
  }
  return x;
}

// [model, input range, tolerance relative to the output's largest magnitude (at least `floor`)]
const CASES: Array<[string, number, number, number?]> = [
  ['faceres', 255, 1e-4],
  ['faceres-deep', 255, 1e-4],
  ['mobilefacenet', 1, 1e-4],
  ['mobileface', 1, 1e-4],
  ['blazeface', 1, 1e-4],
  // FaceMesh: only its face flag is used (detection's third vote); every output is compared. The flag is a
  // probability, ~5e-6 on this input: compared absolutely (floor 1), a relative error of a value that small
  // measures float32 rounding in the logit (measured: 4.7e-8 absolute, 0.9 % relative).
  ['facemesh', 1, 1e-4, 1],
  ['facemesh-detection-full', 1, 1e-4],
];

describe.each(CASES)('%s: converted graph vs tfjs', (name, range, tol, floor = 0) => {
  it('every signature output matches', async () => {
    const path = join(HUMAN_MODELS_DIR, `${name}.json`);
    const model = readGraphModel(path);
    const s = await GraphModelSession.open(path, { threads: 1 });
    try {
      const inp = s.converted.inputs[0]!;
      const x = input(
        inp.shape.reduce((a, b) => a * b, 1),
        range === 1 ? -1 : 0,
        range,
      );
      const ours = await s.run({ [model.inputs[0]!.name]: x });
      const ref = await oracleExecute(path, x, inp.shape, model.outputs);
      for (const o of model.outputs) {
        const a = ours[o]!.data;
        const b = ref[o]!;
        expect(a.length).toBe(b.length);
        let worst = 0;
        let scale = floor;
        for (let i = 0; i < b.length; i++) {
          worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
          scale = Math.max(scale, Math.abs(b[i]!));
        }
        expect(scale).toBeGreaterThan(0);
        expect(worst / scale, `${name} ${o}`).toBeLessThan(tol);
      }
    } finally {
      await s.release();
    }
  }, 60_000);
});

describe('converter errors', () => {
  it('names the node and op it cannot convert', () => {
    const model = readGraphModel(join(HUMAN_MODELS_DIR, 'centernet.json'));
    expect(() => convertGraphModel(model)).toThrow(GraphModelError);
    expect(() => convertGraphModel(model)).toThrow(/node tower_0\/\S+ \((FloorMod|TopKV2|Equal|GatherV2)\)/);
  });
});
