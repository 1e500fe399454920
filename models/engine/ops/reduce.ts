/** Reductions. VJP: reshape the cotangent to keepdims form and broadcast it back (÷N for the mean). */
import { ShapeError, type Tensor, defineOp, normAxis } from '../graph.js';
import { mul } from './elementwise.js';
import { expand, reshape } from './shape.js';

interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}

function reducedShape(x: Tensor, axes: number[], keepdims: boolean): number[] {
  return keepdims
    ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !axes.includes(i));
}

function unreduce(gy: Tensor, x: Tensor, axes: number[]): Tensor {
  return expand(reshape(gy, reducedShape(x, axes, true)), x.shape);
}

const reduceSumOp = defineOp<ReduceAttrs>({
  name: 'ReduceSum',
  forward(g, [x], { axes, keepdims }) {
    // opset 13+: ReduceSum takes its axes as an input.
    return [
      g.node1('ReduceSum', [x!, g.ints(axes)], reducedShape(x!, axes, keepdims), x!.dtype, {
        keepdims: keepdims ? 1 : 0,
      }),
    ];
  },
  vjp({ inputs: [x], attrs: { axes } }, [gy]) {
    return [unreduce(gy!, x!, axes)];
  },
});

const reduceMeanOp = defineOp<ReduceAttrs>({
  name: 'ReduceMean',
  forward(g, [x], { axes, keepdims }) {
    // opset 17: ReduceMean still takes axes as an attribute.
    return [
      g.node1('ReduceMean', [x!], reducedShape(x!, axes, keepdims), x!.dtype, {
        axes,
        keepdims: keepdims ? 1 : 0,
      }),
    ];
  },
  vjp({ inputs: [x], attrs: { axes } }, [gy]) {
    const n = axes.reduce((p, a) => p * x!.shape[a]!, 1);
    return [mul(unreduce(gy!, x!, axes), 1 / n)];
  },
});

function norm(x: Tensor, axes: number[] | undefined): number[] {
  const a = (axes ?? [...x.shape.keys()]).map((v) => normAxis(v, x.rank));
  if (new Set(a).size !== a.length) throw new ShapeError(`reduce: repeated axes for ${x}`);
  return a.sort((p, q) => p - q);
}

/** Sum over `axes` (all when omitted). */
export const reduceSum = (x: Tensor, axes?: number[], keepdims = false): Tensor =>
  reduceSumOp([x], { axes: norm(x, axes), keepdims })[0]!;

/** Mean over `axes` (all when omitted). */
export const reduceMean = (x: Tensor, axes?: number[], keepdims = false): Tensor =>
  reduceMeanOp([x], { axes: norm(x, axes), keepdims })[0]!;
