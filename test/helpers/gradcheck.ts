/**
 * Gradient checking against central finite differences computed by running the *forward model in
 * onnxruntime* (never a JS re-implementation of the op): the analytic directional derivative
 * ⟨∇L, v⟩ from our backward graph must equal (L(x+εv) − L(x−εv)) / 2ε for random directions v.
 */
import { Graph, Session, type Tensor, grad, mul, reduceSum, toBytes } from '../../models/engine/index.js';

/** Deterministic uniform numbers (tests must be reproducible). */
export function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = lo + (hi - lo) * (s / 2 ** 32);
  }
  return out;
}

export interface GradCheckInput {
  shape: number[];
  data?: Float32Array;
  lo?: number;
  hi?: number;
}

export interface GradCheckResult {
  analytic: number[];
  numeric: number[];
  maxRelErr: number;
}

export async function gradCheck(
  build: (g: Graph, xs: Tensor[]) => Tensor,
  inputs: GradCheckInput[],
  opts: { eps?: number; directions?: number; seed?: number } = {},
): Promise<GradCheckResult> {
  const eps = opts.eps ?? 1e-2;
  const seed = opts.seed ?? 7;
  const g = new Graph('gradcheck');
  const xs = inputs.map((s, i) => g.input(`x${i}`, s.shape));
  const y = build(g, xs);
  // A random probe makes L = Σ y·R sensitive to every output element (and to permutations).
  const probe = g.constant(rand(y.size, seed + 101), y.shape);
  const loss = reduceSum(mul(y, probe));
  const grads = grad(loss, xs);
  g.output(loss, 'loss');
  grads.forEach((t, i) => g.output(t, `grad${i}`));
  const session = await Session.create(toBytes(g), { provider: 'cpu' });

  const base = inputs.map(
    (s, i) =>
      s.data ??
      rand(
        s.shape.reduce((a, b) => a * b, 1),
        seed + i,
        s.lo ?? -1,
        s.hi ?? 1,
      ),
  );
  const feeds = (xsData: Float32Array[]) => Object.fromEntries(xsData.map((d, i) => [`x${i}`, d]));
  const out = await session.run(feeds(base));
  const lossAt = async (d: Float32Array[]) => (await session.run(feeds(d), ['loss'])).loss!.data[0]!;

  const analytic: number[] = [];
  const numeric: number[] = [];
  let maxRelErr = 0;
  for (let k = 0; k < (opts.directions ?? 3); k++) {
    const dirs = base.map((b, i) => rand(b.length, seed * 31 + k * 7 + i + 1000));
    let a = 0;
    dirs.forEach((v, i) => {
      const gi = out[`grad${i}`]!.data;
      for (let j = 0; j < v.length; j++) a += gi[j]! * v[j]!;
    });
    const plus = base.map((b, i) => b.map((x, j) => x + eps * dirs[i]![j]!));
    const minus = base.map((b, i) => b.map((x, j) => x - eps * dirs[i]![j]!));
    const n = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * eps);
    analytic.push(a);
    numeric.push(n);
    const rel = Math.abs(a - n) / Math.max(Math.abs(a), Math.abs(n), 1e-3);
    maxRelErr = Math.max(maxRelErr, rel);
  }
  await session.release();
  return { analytic, numeric, maxRelErr };
}

/** Run a forward-only graph once and return its single output. */
export async function runForward(build: (g: Graph) => Tensor, feeds: Record<string, Float32Array> = {}) {
  const g = new Graph('fwd');
  g.output(build(g), 'y');
  const s = await Session.create(toBytes(g), { provider: 'cpu' });
  const out = (await s.run(feeds)).y!;
  await s.release();
  return out;
}
