/**
 * Elementwise arithmetic with NumPy broadcasting. Each op's forward and VJP side by side; broadcast
 * cotangents are summed back to each operand's shape.
 */
import { type Graph, type Tensor, broadcastShapes, defineOp } from '../graph.js';
import { sumToShape } from './shape.js';

export type TensorLike = Tensor | number;

const lift = (g: Graph, v: TensorLike): Tensor => (typeof v === 'number' ? g.scalar(v) : v);
function graphOf(...xs: TensorLike[]): Graph {
  const t = xs.find((x): x is Tensor => typeof x !== 'number');
  if (!t) throw new Error('elementwise op on plain numbers');
  return t.graph;
}

function binary(
  onnxOp: string,
  vjp: (a: Tensor, b: Tensor, y: Tensor, gy: Tensor, needs: boolean[]) => Array<Tensor | null>,
) {
  const op = defineOp<null>({
    name: onnxOp,
    forward(g, [a, b]) {
      return [g.node1(onnxOp, [a!, b!], broadcastShapes(a!.shape, b!.shape, onnxOp), a!.dtype)];
    },
    vjp({ inputs: [a, b], outputs: [y], needs }, [gy]) {
      const [ga, gb] = vjp(a!, b!, y!, gy!, needs);
      return [ga ? sumToShape(ga, a!.shape) : null, gb ? sumToShape(gb, b!.shape) : null];
    },
  });
  return (a: TensorLike, b: TensorLike): Tensor => {
    const g = graphOf(a, b);
    return op([lift(g, a), lift(g, b)], null)[0]!;
  };
}

export const add = binary('Add', (_a, _b, _y, gy) => [gy, gy]);
export const sub = binary('Sub', (_a, _b, _y, gy, needs) => [gy, needs[1] ? neg(gy) : null]);
export const mul = binary('Mul', (a, b, _y, gy, needs) => [
  needs[0] ? mul(gy, b) : null,
  needs[1] ? mul(gy, a) : null,
]);
// d(a/b)/db = -a/b² = -y/b
export const div = binary('Div', (_a, b, y, gy, needs) => [
  needs[0] ? div(gy, b) : null,
  needs[1] ? neg(div(mul(gy, y), b)) : null,
]);

function unary(onnxOp: string, vjp: (x: Tensor, y: Tensor, gy: Tensor) => Tensor) {
  const op = defineOp<null>({
    name: onnxOp,
    forward(g, [x]) {
      return [g.node1(onnxOp, [x!], x!.shape, x!.dtype)];
    },
    vjp({ inputs: [x], outputs: [y] }, [gy]) {
      return [vjp(x!, y!, gy!)];
    },
  });
  return (x: Tensor): Tensor => op([x], null)[0]!;
}

export const neg = unary('Neg', (_x, _y, gy) => neg(gy));
// Sign(0) = 0 matches PyTorch's subgradient of |x| at 0.
export const abs = unary('Abs', (x, _y, gy) => mul(gy, x.graph.node1('Sign', [x], x.shape, x.dtype)));
export const sqrt = unary('Sqrt', (_x, y, gy) => div(mul(gy, 0.5), y));
export const reciprocal = unary('Reciprocal', (_x, y, gy) => neg(mul(gy, mul(y, y))));
export const exp = unary('Exp', (_x, y, gy) => mul(gy, y));
export const log = unary('Log', (x, _y, gy) => div(gy, x));

const powOp = defineOp<{ p: number }>({
  name: 'Pow',
  forward(g, [x], { p }) {
    return [g.node1('Pow', [x!, g.scalar(p)], x!.shape, x!.dtype)];
  },
  vjp({ inputs: [x], attrs: { p } }, [gy]) {
    if (p === 0) return [null];
    const dx = p === 1 ? gy! : p === 2 ? mul(gy!, mul(x!, 2)) : mul(gy!, mul(pow(x!, p - 1), p));
    return [dx];
  },
});

/** x ** p for a constant exponent. */
export const pow = (x: Tensor, p: number): Tensor => powOp([x], { p })[0]!;
export const square = (x: Tensor): Tensor => mul(x, x);
