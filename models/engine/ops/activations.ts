/** Activations and softmax, forward and VJP side by side. Masks in VJPs are raw (untaped) nodes. */
import { type Tensor, defineOp, normAxis } from '../graph.js';
import { add, exp, mul, neg, sub } from './elementwise.js';
import { reduceSum } from './reduce.js';

/** Float mask 1 where x > 0 else `neg` (a scalar or a broadcastable constant tensor). */
function positiveMask(x: Tensor, negSlope: Tensor): Tensor {
  const g = x.graph;
  const pos = g.node1('Greater', [x, g.scalar(0)], x.shape, 'bool');
  return g.node1('Where', [pos, g.scalar(1), negSlope], x.shape);
}

const reluOp = defineOp<null>({
  name: 'Relu',
  forward: (g, [x]) => [g.node1('Relu', [x!], x!.shape)],
  vjp: ({ g, inputs: [x] }, [gy]) => [mul(gy!, positiveMask(x!, g.scalar(0)))],
});
export const relu = (x: Tensor): Tensor => reluOp([x], null)[0]!;

/**
 * Leaky ReLU with an optional output gain (StyleGAN2's ×√2), as one op so the backward is a single
 * mask product at full resolution: gx = gy · where(x > 0, gain, gain·α). The forward's Mul by the gain
 * is kept separate so forward values round exactly as torch's `leaky_relu(x) * gain`.
 *
 * The sign mask is a bool output of the forward (1 byte per element, pruned when no gradient is
 * asked for): emitted next to the activation, it lets onnxruntime free the float pre-activation as
 * soon as the next layer has consumed it instead of keeping it alive until the backward. Measured on
 * the 1024-px step: see the commit that introduced it.
 */
const leakyOp = defineOp<{ alpha: number; gain: number }>({
  name: 'LeakyRelu',
  forward: (g, [x], { alpha, gain }) => {
    let y = g.node1('LeakyRelu', [x!], x!.shape, 'float32', { alpha: { float: alpha } });
    if (gain !== 1) y = g.node1('Mul', [y, g.scalar(gain)], x!.shape);
    return [y, g.node1('Greater', [x!, g.scalar(0)], x!.shape, 'bool')];
  },
  vjp: ({ g, outputs: [, pos], attrs: { alpha, gain } }, [gy]) => {
    const slope = g.node1('Where', [pos!, g.scalar(gain), g.scalar(Math.fround(gain) * alpha)], pos!.shape);
    return [mul(gy!, slope)];
  },
});
/** leaky_relu(x, α) · gain (gain 1: plain leaky ReLU). */
export const leakyRelu = (x: Tensor, alpha = 0.01, gain = 1): Tensor => leakyOp([x], { alpha, gain })[0]!;

const preluOp = defineOp<null>({
  name: 'PRelu',
  forward: (g, [x, slope]) => [g.node1('PRelu', [x!, slope!], x!.shape)],
  vjp: ({ inputs: [x, slope], needs }, [gy]) => {
    if (needs[1]) throw new Error('prelu: gradient w.r.t. the slope is not supported (weights are frozen)');
    return [mul(gy!, positiveMask(x!, slope!)), null];
  },
});
/** PReLU with a per-channel slope; for NCHW pass slope shaped [C, 1, 1]. */
export const prelu = (x: Tensor, slope: Tensor): Tensor => preluOp([x, slope], null)[0]!;

const sigmoidOp = defineOp<null>({
  name: 'Sigmoid',
  forward: (g, [x]) => [g.node1('Sigmoid', [x!], x!.shape)],
  vjp: ({ outputs: [y] }, [gy]) => [mul(gy!, mul(y!, sub(1, y!)))],
});
export const sigmoid = (x: Tensor): Tensor => sigmoidOp([x], null)[0]!;

const tanhOp = defineOp<null>({
  name: 'Tanh',
  forward: (g, [x]) => [g.node1('Tanh', [x!], x!.shape)],
  vjp: ({ outputs: [y] }, [gy]) => [mul(gy!, sub(1, mul(y!, y!)))],
});
export const tanh = (x: Tensor): Tensor => tanhOp([x], null)[0]!;

const erfOp = defineOp<null>({
  name: 'Erf',
  forward: (g, [x]) => [g.node1('Erf', [x!], x!.shape)],
  // d erf(x)/dx = 2/√π · exp(−x²)
  vjp: ({ inputs: [x] }, [gy]) => [mul(gy!, mul(exp(neg(mul(x!, x!))), 2 / Math.sqrt(Math.PI)))],
});
export const erf = (x: Tensor): Tensor => erfOp([x], null)[0]!;

/** Exact GELU, 0.5·x·(1 + erf(x/√2)) (torch.nn.GELU default). */
export const gelu = (x: Tensor): Tensor => mul(mul(x, 0.5), add(1, erf(mul(x, Math.SQRT1_2))));
/** OpenAI CLIP's QuickGELU, x·σ(1.702x). */
export const quickGelu = (x: Tensor): Tensor => mul(x, sigmoid(mul(x, 1.702)));

const softmaxOp = defineOp<{ axis: number }>({
  name: 'Softmax',
  forward: (g, [x], { axis }) => [g.node1('Softmax', [x!], x!.shape, 'float32', { axis })],
  // y ⊙ (gy − Σ gy⊙y)
  vjp: ({ outputs: [y], attrs: { axis } }, [gy]) => [
    mul(y!, sub(gy!, reduceSum(mul(gy!, y!), [axis], true))),
  ],
});
export const softmax = (x: Tensor, axis = -1): Tensor => softmaxOp([x], { axis: normAxis(axis, x.rank) })[0]!;
