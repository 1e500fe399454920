/**
 * Transformer-specific primitives with hand-written VJPs, where the generic composition from engine
 * ops would emit more (and larger) backward nodes than needed. Both were measured on the FaRL
 * forward+backward profile (see test/bench/farl.ts).
 */
import * as E from '../../engine/index.js';
import { ShapeError, defineOp, normAxis, type Tensor } from '../../engine/index.js';

const splitOp = defineOp<{ axis: number; sizes: number[] }>({
  name: 'Split',
  forward(g, [x], { axis, sizes }) {
    return g.node(
      'Split',
      [x!, g.ints(sizes)],
      sizes.map((s) => ({ shape: x!.shape.map((d, i) => (i === axis ? s : d)), dtype: x!.dtype })),
      { axis },
    );
  },
  // The adjoint of a split is one Concat; slices would each scatter back with a Pad and then be summed.
  vjp({ attrs: { axis } }, gys) {
    return [E.concat(gys, axis)];
  },
});

/** Split `x` along `axis` into consecutive parts of the given sizes (ONNX Split). */
export function split(x: Tensor, sizes: number[], axis: number): Tensor[] {
  const a = normAxis(axis, x.rank);
  if (sizes.some((s) => !Number.isInteger(s) || s <= 0) || sizes.reduce((p, q) => p + q, 0) !== x.shape[a])
    throw new ShapeError(`split: sizes [${sizes}] do not add up to axis ${a} of ${x}`);
  return splitOp([x], { axis: a, sizes });
}

const QUICK_GELU_ALPHA = 1.702;

const quickGeluOp = defineOp<null>({
  name: 'QuickGelu',
  // Outputs y, s = σ(αx) and u = αx; the last two are kept for the VJP (and pruned when unused).
  forward(g, [x]) {
    const u = g.node1('Mul', [x!, g.scalar(QUICK_GELU_ALPHA)], x!.shape);
    const s = g.node1('Sigmoid', [u], x!.shape);
    const y = g.node1('Mul', [x!, s], x!.shape);
    return [y, s, u];
  },
  // d/dx x·σ(αx) = σ + αx·σ(1−σ) = s·(1 + u·(1 − s)): four elementwise ops before the product with gy,
  // against seven when the chain rule runs through the separate Mul/Sigmoid/Mul.
  vjp({ outputs: [, s, u] }, [gy]) {
    return [E.mul(gy!, E.mul(s!, E.add(E.mul(u!, E.sub(1, s!)), 1)))];
  },
});

/** OpenAI CLIP's QuickGELU, x·σ(1.702x), with a fused derivative. */
export const quickGelu = (x: Tensor): Tensor => quickGeluOp([x], null)[0]!;
