/**
 * Shape ops: reshape, transpose, concat, slice (any steps), pad, expand, gather, plus the helpers the
 * VJPs of broadcasting ops need (fill, sumToShape). Each op's forward and VJP sit side by side.
 */
import {
  type Graph,
  type OpDef,
  type Shape,
  ShapeError,
  type Tensor,
  defineOp,
  normAxis,
  numel,
  shapeStr,
} from '../graph.js';
import { matmul } from './matmul.js';
import { reduceSum } from './reduce.js';

/** A constant-valued tensor of `shape` (no gradient: not on the tape). */
export function fill(g: Graph, shape: Shape, value: number): Tensor {
  if (shape.length === 0) return g.scalar(value);
  return g.node1('Expand', [g.scalar(value), g.ints(shape)], shape);
}

/** Sum a broadcast cotangent back down to `shape` (the VJP of every broadcasting op). */
export function sumToShape(gy: Tensor, shape: Shape): Tensor {
  if (gy.shape.join() === shape.join()) return gy;
  const lead = gy.rank - shape.length;
  if (lead < 0) throw new ShapeError(`sumToShape: ${gy} cannot reduce to ${shapeStr(shape)}`);
  const axes: number[] = [];
  for (let i = 0; i < gy.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && gy.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? reduceSum(gy, axes, true) : gy;
  return s.shape.join() === shape.join() ? s : reshape(s, shape);
}

// ---------------------------------------------------------------- Reshape
const reshapeOp = defineOp<{ shape: number[] }>({
  name: 'Reshape',
  forward(g, [x], { shape }) {
    return [g.node1('Reshape', [x!, g.ints(shape)], shape, x!.dtype)];
  },
  vjp({ inputs: [x] }, [gy]) {
    return [reshape(gy!, x!.shape)];
  },
});

/** Reshape; one dimension may be -1. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const known = shape.filter((d) => d !== -1);
  const inferred = shape.map((d) => (d === -1 ? x.size / numel(known) : d));
  if (
    shape.filter((d) => d === -1).length > 1 ||
    numel(inferred) !== x.size ||
    inferred.some((d) => !Number.isInteger(d))
  )
    throw new ShapeError(`reshape: cannot reshape ${x} to ${shapeStr(shape)}`);
  if (inferred.join() === x.shape.join()) return x;
  return reshapeOp([x], { shape: inferred })[0]!;
}

// ---------------------------------------------------------------- Transpose
const transposeOp = defineOp<{ perm: number[] }>({
  name: 'Transpose',
  forward(g, [x], { perm }) {
    return [
      g.node1(
        'Transpose',
        [x!],
        perm.map((p) => x!.shape[p]!),
        x!.dtype,
        { perm },
      ),
    ];
  },
  vjp({ attrs: { perm } }, [gy]) {
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [transpose(gy!, inv)];
  },
});

export function transpose(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i))
    throw new ShapeError(`transpose: bad perm [${perm}] for ${x}`);
  if (perm.every((p, i) => p === i)) return x;
  return transposeOp([x], { perm })[0]!;
}

// ---------------------------------------------------------------- Concat
const concatDef: OpDef<{ axis: number }> = {
  name: 'Concat',
  forward(g, xs, { axis }) {
    const shape = [...xs[0]!.shape];
    shape[axis] = xs.reduce((s, t) => s + t.shape[axis]!, 0);
    return [g.node1('Concat', xs, shape, xs[0]!.dtype, { axis })];
  },
  vjp({ inputs, attrs: { axis }, needs }, [gy]) {
    let off = 0;
    return inputs.map((t, i) => {
      const start = off;
      off += t.shape[axis]!;
      return needs[i] ? slice(gy!, [start], [off], [axis]) : null;
    });
  },
};
const concatOp = defineOp(concatDef);

export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 1) return xs[0]!;
  const a = normAxis(axis, xs[0]!.rank);
  for (const t of xs)
    if (t.rank !== xs[0]!.rank || t.shape.some((d, i) => i !== a && d !== xs[0]!.shape[i]))
      throw new ShapeError(`concat: ${t} does not match ${xs[0]} outside axis ${a}`);
  return concatOp(xs, { axis: a })[0]!;
}

// ---------------------------------------------------------------- Slice
interface SliceAttrs {
  starts: number[];
  ends: number[];
  axes: number[];
  steps: number[];
}

/** Normalise one axis of a slice like NumPy/ONNX (clamping); returns the first index and the count. */
function sliceRange(dim: number, start: number, end: number, step: number): { first: number; count: number } {
  if (step === 0) throw new ShapeError('slice: step 0');
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
    return { first: s, count: Math.max(0, Math.ceil((e - s) / step)) };
  }
  s = clamp(s, -1, dim - 1);
  e = clamp(e, -1, dim - 1);
  return { first: s, count: Math.max(0, Math.ceil((s - e) / -step)) };
}

const sliceOp = defineOp<SliceAttrs>({
  name: 'Slice',
  forward(g, [x], { starts, ends, axes, steps }) {
    const shape = [...x!.shape];
    axes.forEach((a, i) => (shape[a] = sliceRange(x!.shape[a]!, starts[i]!, ends[i]!, steps[i]!).count));
    // Large sentinels are clamped by ONNX like by NumPy; int64 can carry them.
    return [
      g.node1('Slice', [x!, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)], shape, x!.dtype),
    ];
  },
  vjp({ inputs: [x], attrs }, [gy]) {
    // Scatter the cotangent back: one axis at a time, interleave zeros for |step| > 1, flip for step < 0,
    // then pad to the input's extent. Only Slice/Pad/Reshape are needed, all cheap memory moves.
    let t = gy!;
    attrs.axes.forEach((a, i) => {
      const dim = x!.shape[a]!;
      const step = attrs.steps[i]!;
      const { first, count } = sliceRange(dim, attrs.starts[i]!, attrs.ends[i]!, step);
      if (count === 0) {
        const shape = [...t.shape];
        shape[a] = dim;
        t = fill(t.graph, shape, 0);
        return;
      }
      let lo = first;
      if (step < 0) {
        t = slice(t, [-1], [-(2 ** 62)], [a], [-1]);
        lo = first + (count - 1) * step;
      }
      const s = Math.abs(step);
      if (s > 1) {
        const sh = [...t.shape];
        const withInner = [...sh.slice(0, a + 1), 1, ...sh.slice(a + 1)];
        t = reshape(t, withInner);
        const pads = new Array(withInner.length * 2).fill(0);
        pads[withInner.length + a + 1] = s - 1;
        t = pad(t, pads);
        sh[a] = count * s;
        t = reshape(t, sh);
        t = slice(t, [0], [(count - 1) * s + 1], [a]);
      }
      const pads = new Array(t.rank * 2).fill(0);
      pads[a] = lo;
      pads[t.rank + a] = dim - lo - t.shape[a]!;
      t = pad(t, pads);
    });
    return [t];
  },
});

/** Slice with ONNX semantics (negative indices, clamping, any nonzero step). */
export function slice(
  x: Tensor,
  starts: number[],
  ends: number[],
  axes?: number[],
  steps?: number[],
): Tensor {
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, x.rank));
  const st = steps ?? ax.map(() => 1);
  if (starts.length !== ax.length || ends.length !== ax.length || st.length !== ax.length)
    throw new ShapeError(`slice: starts/ends/axes/steps lengths differ for ${x}`);
  if (ax.length === 1 && st[0] === 1) {
    const part = partOfConcat(x, ax[0]!, starts[0]!, ends[0]!);
    if (part) return part;
  }
  return sliceOp([x], { starts, ends, axes: ax, steps: st })[0]!;
}

/**
 * A slice that lies inside one input of a concat along the same axis is taken from that input: the same
 * values, but the tape then knows the slice depends on that input alone. Without this, grad() treats
 * every slice of a concat as depending on all its parts: FALCO's step slices each W+ row out of
 * concat(real rows, trainable rows, real rows), and the backward differentiated the styles of all 18
 * rows (full-resolution products, and the activations kept alive for them) only to drop 13 of them.
 */
function partOfConcat(x: Tensor, axis: number, start: number, end: number): Tensor | undefined {
  const made = x.graph.producers.get(x.name);
  if (made?.op !== concatDef || (made.attrs as { axis: number }).axis !== axis) return undefined;
  const { first, count } = sliceRange(x.shape[axis]!, start, end, 1);
  let off = 0;
  for (const p of made.inputs) {
    const len = p.shape[axis]!;
    if (first >= off && first + count <= off + len)
      return first === off && count === len ? p : slice(p, [first - off], [first - off + count], [axis]);
    off += len;
  }
  return undefined;
}

// ---------------------------------------------------------------- Pad (constant)
const padOp = defineOp<{ pads: number[]; value: number }>({
  name: 'Pad',
  forward(g, [x], { pads, value }) {
    const r = x!.rank;
    const shape = x!.shape.map((d, i) => d + pads[i]! + pads[i + r]!);
    return [g.node1('Pad', [x!, g.ints(pads), g.scalar(value)], shape, x!.dtype, { mode: 'constant' })];
  },
  vjp({ inputs: [x], attrs: { pads } }, [gy]) {
    const r = x!.rank;
    const axes = [...Array(r).keys()].filter((i) => pads[i] !== 0 || pads[i + r] !== 0);
    return [
      slice(
        gy!,
        axes.map((i) => pads[i]!),
        axes.map((i) => pads[i]! + x!.shape[i]!),
        axes,
      ),
    ];
  },
});

/** Constant pad, ONNX layout [begin_0..begin_n, end_0..end_n]; negative pads crop. */
export function pad(x: Tensor, pads: number[], value = 0): Tensor {
  if (pads.length !== 2 * x.rank) throw new ShapeError(`pad: ${pads.length} pads for ${x}`);
  if (pads.every((p) => p === 0)) return x;
  if (pads.some((p) => p < 0)) {
    // Crop the negative sides with a slice (cleaner gradients than ONNX negative pads).
    const r = x.rank;
    const axes = [...Array(r).keys()].filter((i) => pads[i]! < 0 || pads[i + r]! < 0);
    x = slice(
      x,
      axes.map((i) => Math.max(0, -pads[i]!)),
      axes.map((i) => x.shape[i]! + Math.min(0, pads[i + r]!)),
      axes,
    );
    pads = pads.map((p) => Math.max(0, p));
    if (pads.every((p) => p === 0)) return x;
  }
  return padOp([x], { pads, value })[0]!;
}

// ---------------------------------------------------------------- Expand
const expandOp = defineOp<{ shape: number[] }>({
  name: 'Expand',
  forward(g, [x], { shape }) {
    return [g.node1('Expand', [x!, g.ints(shape)], shape, x!.dtype)];
  },
  vjp({ inputs: [x] }, [gy]) {
    return [sumToShape(gy!, x!.shape)];
  },
});

export function expand(x: Tensor, shape: Shape): Tensor {
  const out = [...shape];
  const lead = out.length - x.rank;
  if (lead < 0 || x.shape.some((d, i) => d !== 1 && d !== out[i + lead]))
    throw new ShapeError(`expand: ${x} cannot expand to ${shapeStr(shape)}`);
  if (out.join() === x.shape.join()) return x;
  return expandOp([x], { shape: out })[0]!;
}

// ---------------------------------------------------------------- Gather (constant indices)
const gatherOp = defineOp<{ indices: number[]; axis: number }>({
  name: 'Gather',
  forward(g, [x], { indices, axis }) {
    const shape = [...x!.shape];
    shape[axis] = indices.length;
    return [g.node1('Gather', [x!, g.ints(indices)], shape, x!.dtype, { axis })];
  },
  vjp({ g, inputs: [x], attrs: { indices, axis } }, [gy]) {
    // Scatter-add as a product with a constant one-hot matrix: exact, handles repeated indices, and
    // MatMul is fast on every provider (ScatterND with reduction is not implemented everywhere).
    const D = x!.shape[axis]!;
    const K = indices.length;
    const oneHot = new Float32Array(K * D);
    indices.forEach((idx, k) => (oneHot[k * D + (idx < 0 ? idx + D : idx)] += 1));
    const perm = [...Array(x!.rank).keys()].filter((i) => i !== axis).concat([axis]);
    const moved = transpose(gy!, perm);
    const scattered = matmul(moved, g.constant(oneHot, [K, D]));
    return [
      transpose(
        scattered,
        perm.map((_, i) => perm.indexOf(i)),
      ),
    ];
  },
});

/** Gather along `axis` with constant indices (output keeps the rank: indices are 1-D). */
export function gather(x: Tensor, indices: number[], axis = 0): Tensor {
  const a = normAxis(axis, x.rank);
  if (indices.some((i) => i < -x.shape[a]! || i >= x.shape[a]!))
    throw new ShapeError(`gather: index out of range for axis ${a} of ${x}`);
  return gatherOp([x], { indices, axis: a })[0]!;
}

export const flatten = (x: Tensor, from = 1): Tensor => reshape(x, [...x.shape.slice(0, from), -1]);
export const unsqueeze = (x: Tensor, axis: number): Tensor => {
  const a = axis < 0 ? axis + x.rank + 1 : axis;
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
};
export const squeeze = (x: Tensor, axis: number): Tensor => {
  const a = normAxis(axis, x.rank);
  if (x.shape[a] !== 1) throw new ShapeError(`squeeze: axis ${a} of ${x} is not 1`);
  return reshape(x, [...x.shape.slice(0, a), ...x.shape.slice(a + 1)]);
};
