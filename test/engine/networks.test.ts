/** Whole small networks through the engine: gradients of composed ops must also match finite differences. */
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { gradCheck, rand } from '../helpers/gradcheck.js';

let seed = 1000;
const w = (g: E.Graph, shape: number[], scale = 0.3) =>
  g.constant(
    rand(
      shape.reduce((a, b) => a * b, 1),
      seed++,
      -scale,
      scale,
    ),
    shape,
  );

describe('composed networks', () => {
  it('residual conv net (conv → BN → PReLU → strided conv → SE gate + shortcut)', async () => {
    const r = await gradCheck(
      (g, [x]) => {
        const h = E.prelu(
          E.batchNorm(E.conv2d(x!, w(g, [4, 3, 3, 3]), undefined, { padding: 1 }), {
            weight: rand(4, 1, 0.5, 1.5),
            bias: rand(4, 2),
            mean: rand(4, 3),
            var: rand(4, 4, 0.5, 2),
          }),
          w(g, [4, 1, 1], 0.25),
        );
        const r2 = E.conv2d(h, w(g, [4, 4, 3, 3]), w(g, [4]), { stride: 2, padding: 1 });
        const gate = E.sigmoid(
          E.conv2d(E.relu(E.conv2d(E.adaptiveAvgPool2d(r2, 1), w(g, [2, 4, 1, 1]))), w(g, [4, 2, 1, 1])),
        );
        const shortcut = E.conv2d(x!, w(g, [4, 3, 1, 1]), undefined, { stride: 2 });
        return E.add(E.mul(r2, gate), shortcut);
      },
      [{ shape: [2, 3, 8, 8] }],
      // PReLU/ReLU kinks: a small step keeps finite differences from straddling them.
      { eps: 2e-3, directions: 4 },
    );
    expect(r.maxRelErr).toBeLessThan(5e-3);
  });

  it('transformer block (LN → multi-head attention → LN → GELU MLP, residuals)', async () => {
    const T = 5,
      D = 8,
      H = 2,
      hd = D / H;
    const r = await gradCheck(
      (g, [x]) => {
        const ln1 = E.layerNorm(x!, w(g, [D], 1), w(g, [D], 0.1));
        const qkv = E.linear(ln1, w(g, [3 * D, D]), w(g, [3 * D], 0.1));
        const heads = (t: E.Tensor) => E.transpose(E.reshape(t, [1, T, H, hd]), [0, 2, 1, 3]);
        const q = heads(E.slice(qkv, [0], [D], [2]));
        const k = heads(E.slice(qkv, [D], [2 * D], [2]));
        const v = heads(E.slice(qkv, [2 * D], [3 * D], [2]));
        const att = E.softmax(E.mul(E.matmul(q, E.transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(hd)), -1);
        const o = E.reshape(E.transpose(E.matmul(att, v), [0, 2, 1, 3]), [1, T, D]);
        const x1 = E.add(x!, E.linear(o, w(g, [D, D]), w(g, [D], 0.1)));
        const mlp = E.linear(
          E.gelu(E.linear(E.layerNorm(x1, w(g, [D], 1), w(g, [D], 0.1)), w(g, [4 * D, D]))),
          w(g, [D, 4 * D]),
        );
        return E.add(x1, mlp);
      },
      [{ shape: [1, T, D] }],
    );
    expect(r.maxRelErr).toBeLessThan(5e-3);
  });

  it('a variable used by several consumers accumulates its cotangents', async () => {
    const r = await gradCheck(
      (_g, [x]) => E.add(E.mul(x!, x!), E.slice(E.concat([E.exp(x!), E.tanh(x!)], 0), [1], [4])),
      [{ shape: [3] }],
    );
    expect(r.maxRelErr).toBeLessThan(5e-3);
  });

  it('grad of a tensor that does not depend on the variable is an error, not zeros', () => {
    const g = new E.Graph();
    const x = g.input('x', [2]);
    const y = g.input('y', [2]);
    expect(() => E.grad(E.reduceSum(y), [x])).toThrow(/does not depend/);
  });
});
