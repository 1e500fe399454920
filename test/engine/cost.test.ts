/** models/engine/cost.ts: dense FLOPs of the serialised nodes, counted by hand on small graphs. */
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';

describe('denseFlops', () => {
  it('counts Conv, ConvTranspose and MatMul of live nodes only (2 FLOPs per multiply-add)', () => {
    const g = new E.Graph('cost');
    const x = g.input('x', [1, 4, 10, 10]);
    const w = g.constant(new Float32Array(8 * 4 * 9), [8, 4, 3, 3]);
    const y = E.conv2d(x, w, undefined, { padding: 1 }); // [1, 8, 10, 10]: 800 outputs × 36 MACs
    const wt = g.constant(new Float32Array(8 * 2 * 9), [8, 2, 3, 3]);
    const up = E.convTranspose2d(y, wt, undefined, { stride: 2 }); // 800 inputs × 18 MACs
    const a = g.input('a', [3, 5]);
    const m = E.matmul(a, g.constant(new Float32Array(35), [5, 7])); // 21 outputs × 5 MACs
    E.matmul(a, g.constant(new Float32Array(5 * 100), [5, 100])); // dead: never reaches an output
    g.output(E.reduceSum(up), 'up');
    g.output(m, 'm');
    const c = E.denseFlops(g);
    expect(c.byOp).toEqual({ Conv: 2 * 800 * 36, ConvTranspose: 2 * 800 * 18, MatMul: 2 * 21 * 5 });
    expect(c.total).toBe(2 * (800 * 36 + 800 * 18 + 21 * 5));
  });

  it('counts the backward: the input gradient of a conv is another conv of the same size', () => {
    const g = new E.Graph('cost_grad');
    const x = g.input('x', [1, 4, 10, 10]);
    const w = g.constant(new Float32Array(8 * 4 * 9).fill(0.1), [8, 4, 3, 3]);
    const loss = E.reduceSum(E.conv2d(x, w, undefined, { padding: 1 }));
    g.output(loss, 'loss');
    g.output(E.grad(loss, [x])[0]!, 'dx');
    expect(E.denseFlops(g).byOp['Conv']).toBe(2 * 2 * 800 * 36);
  });
});
