/** Normalisation layers. */
import { ShapeError, type Tensor, defineOp, normAxis } from '../graph.js';
import { add, mul, sub } from './elementwise.js';
import { reduceMean } from './reduce.js';

const layerNormOp = defineOp<{ axis: number; eps: number }>({
  name: 'LayerNormalization',
  forward(g, [x, gamma, beta], { axis, eps }) {
    const statShape = x!.shape.map((d, i) => (i < axis ? d : 1));
    // Mean and 1/σ are free extra outputs of the ONNX op; the VJP reuses them.
    const [y, mean, inv] = g.node(
      'LayerNormalization',
      [x!, gamma!, beta!],
      [
        { shape: x!.shape, dtype: 'float32' },
        { shape: statShape, dtype: 'float32' },
        { shape: statShape, dtype: 'float32' },
      ],
      { axis, epsilon: { float: eps } },
    );
    return [y!, mean!, inv!];
  },
  vjp({ inputs: [x, gamma], outputs: [, mean, inv], attrs: { axis }, needs }, [gy]) {
    if (needs[1] || needs[2])
      throw new ShapeError('layerNorm: gradients w.r.t. gamma/beta are not supported');
    // x̂ = (x−μ)/σ, g' = gy·γ:  dx = (g' − mean(g') − x̂·mean(g'·x̂)) / σ, means over the normalised axes.
    const axes = [...Array(x!.rank - axis).keys()].map((i) => i + axis);
    const xhat = mul(sub(x!, mean!), inv!);
    const gp = mul(gy!, gamma!);
    const inner = sub(sub(gp, reduceMean(gp, axes, true)), mul(xhat, reduceMean(mul(gp, xhat), axes, true)));
    return [mul(inner, inv!), null, null];
  },
});

/** LayerNorm over the trailing dims from `axis` (PyTorch nn.LayerNorm when axis = -normalized_shape.length). */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps = 1e-5, axis = -1): Tensor {
  const a = normAxis(axis, x.rank);
  const norm = x.shape.slice(a);
  if (gamma.shape.join() !== norm.join() || beta.shape.join() !== norm.join())
    throw new ShapeError(
      `layerNorm: gamma ${gamma} / beta ${beta} do not match normalised shape [${norm}] of ${x}`,
    );
  return layerNormOp([x, gamma, beta], { axis: a, eps })[0]!;
}

/**
 * BatchNorm in inference mode (running statistics), NCHW or NC. Folded on the host into one scale and
 * one shift per channel, so it costs a Mul and an Add and differentiates through them.
 */
export function batchNorm(
  x: Tensor,
  p: { weight?: Float32Array; bias?: Float32Array; mean: Float32Array; var: Float32Array },
  eps = 1e-5,
): Tensor {
  const g = x.graph;
  const C = x.shape[1]!;
  if (p.mean.length !== C || p.var.length !== C)
    throw new ShapeError(`batchNorm: stats of length ${p.mean.length} for ${x}`);
  const scale = new Float32Array(C);
  const shift = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const s = (p.weight ? p.weight[c]! : 1) / Math.sqrt(p.var[c]! + eps);
    scale[c] = s;
    shift[c] = (p.bias ? p.bias[c]! : 0) - p.mean[c]! * s;
  }
  const bshape = [C, ...Array(x.rank - 2).fill(1)];
  return add(mul(x, g.constant(scale, bshape)), g.constant(shift, bshape));
}
