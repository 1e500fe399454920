/** Matrix products. Both operands may be activations (attention's Q·Kᵀ, per-sample styles). */
import { ShapeError, type Tensor, broadcastShapes, defineOp, numel } from '../graph.js';
import { add } from './elementwise.js';
import { sumToShape, transpose } from './shape.js';

const swapLast = (t: Tensor): Tensor => {
  const perm = [...t.shape.keys()];
  perm.push(...perm.splice(-2).reverse());
  return transpose(t, perm);
};

const matmulOp = defineOp<null>({
  name: 'MatMul',
  forward(g, [a, b]) {
    const batch = broadcastShapes(a!.shape.slice(0, -2), b!.shape.slice(0, -2), 'matmul');
    return [g.node1('MatMul', [a!, b!], [...batch, a!.shape.at(-2)!, b!.shape.at(-1)!])];
  },
  vjp({ inputs: [a, b], needs }, [gy]) {
    return [
      needs[0] ? sumToShape(matmul(gy!, swapLast(b!)), a!.shape) : null,
      needs[1] ? sumToShape(matmul(swapLast(a!), gy!), b!.shape) : null,
    ];
  },
});

/** Batched matrix product with broadcasting over leading dims (both operands rank ≥ 2). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`matmul: operands must be rank ≥ 2, got ${a} and ${b}`);
  if (a.shape.at(-1) !== b.shape.at(-2)) throw new ShapeError(`matmul: inner dims differ: ${a} @ ${b}`);
  return matmulOp([a, b], null)[0]!;
}

/**
 * PyTorch Linear: x·Wᵀ + b with W [out, in] (as stored in state dicts). A constant W is transposed
 * once on the host so the session sees a plain constant MatMul (Gemm's role, with broadcasting).
 */
export function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  const g = x.graph;
  const [out, inp] = w.shape as [number, number];
  if (w.rank !== 2 || x.shape.at(-1) !== inp) throw new ShapeError(`linear: ${x} does not match weight ${w}`);
  const data = g.constantData(w);
  let wt: Tensor;
  if (data instanceof Float32Array) {
    const t = new Float32Array(numel(w.shape));
    for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) t[i * out + o] = data[o * inp + i]!;
    wt = g.constant(t, [inp, out], `${w.name}_T`);
  } else wt = transpose(w, [1, 0]);
  const y = matmul(x.rank === 1 ? x : x, wt);
  return b ? add(y, b) : y;
}
