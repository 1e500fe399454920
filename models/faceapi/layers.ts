/**
 * TensorFlow-convention layers on our ONNX engine (forward only): tfjs stores conv filters as
 * [kh, kw, in, out] (depthwise: [kh, kw, in, multiplier]) and pads 'same' convolutions asymmetrically
 * (the extra row/column goes to the bottom/right), while ONNX wants [out, in/groups, kh, kw] and explicit
 * [top, left, bottom, right] pads. These helpers convert once on the host and emit plain ONNX nodes.
 *
 * Nodes without a VJP (Clip, MaxPool) are emitted raw with `g.node1`: these graphs are never differentiated.
 */
import * as E from '../engine/index.js';

/** tfjs [kh, kw, in, out] → ONNX [out, in, kh, kw]. */
export function hwioToOihw(w: Float32Array, shape: number[]): Float32Array {
  const [kh, kw, cin, cout] = shape as [number, number, number, number];
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++)
        for (let o = 0; o < cout; o++)
          out[((o * cin + i) * kh + y) * kw + x] = w[((y * kw + x) * cin + i) * cout + o];
  return out;
}

/** tfjs depthwise [kh, kw, C, 1] → ONNX grouped [C, 1, kh, kw]. */
export function depthwiseToOihw(w: Float32Array, shape: number[]): Float32Array {
  const [kh, kw, c, m] = shape as [number, number, number, number];
  if (m !== 1) throw new Error(`depthwise multiplier ${m} is not supported`);
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < c; i++) out[(i * kh + y) * kw + x] = w[(y * kw + x) * c + i];
  return out;
}

/** TF 'SAME' pads for one axis: total = max((ceil(n/s)-1)·s + k - n, 0), the odd one at the end. */
function samePads(n: number, k: number, s: number): [number, number] {
  const out = Math.ceil(n / s);
  const total = Math.max((out - 1) * s + k - n, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export type Padding = 'same' | 'valid';

export interface ConvSpec {
  /** ONNX layout weight [out, in/groups, kh, kw]. */
  weight: Float32Array;
  wshape: [number, number, number, number];
  bias?: Float32Array;
  stride: number;
  padding: Padding;
  groups?: number;
}

/** Emits one Conv (+bias) with TF padding semantics. */
export function conv(g: E.Graph, x: E.Tensor, spec: ConvSpec, name: string): E.Tensor {
  const [, , H, W] = x.shape as [number, number, number, number];
  const [, , kh, kw] = spec.wshape;
  let pads: [number, number, number, number] = [0, 0, 0, 0];
  if (spec.padding === 'same') {
    const [t, b] = samePads(H, kh, spec.stride);
    const [l, r] = samePads(W, kw, spec.stride);
    pads = [t, l, b, r];
  }
  const w = g.constant(spec.weight, spec.wshape, `${name}.w`);
  const b = spec.bias ? g.constant(spec.bias, [spec.wshape[0]], `${name}.b`) : undefined;
  return E.conv2d(x, w, b, { stride: spec.stride, padding: pads, groups: spec.groups ?? 1 });
}

/** ReLU6 as an ONNX Clip (forward only). */
export function relu6(g: E.Graph, x: E.Tensor): E.Tensor {
  return g.node1('Clip', [x, g.scalar(0), g.scalar(6)], x.shape);
}

/** MaxPool with TF 'valid' padding (forward only). */
export function maxPoolValid(g: E.Graph, x: E.Tensor, k: number, s: number): E.Tensor {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const ho = Math.floor((H - k) / s) + 1;
  const wo = Math.floor((W - k) / s) + 1;
  return g.node1('MaxPool', [x], [N, C, ho, wo], 'float32', {
    kernel_shape: [k, k],
    strides: [s, s],
    pads: [0, 0, 0, 0],
  });
}

/** Per-output-channel affine folded into a conv: w·a, b·a + c. */
export function foldAffine(
  weight: Float32Array,
  bias: Float32Array,
  a: Float32Array,
  c: Float32Array,
): { weight: Float32Array; bias: Float32Array } {
  const cout = a.length;
  const per = weight.length / cout;
  const w = new Float32Array(weight.length);
  const b = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    for (let i = 0; i < per; i++) w[o * per + i] = weight[o * per + i] * a[o];
    b[o] = bias[o] * a[o] + c[o];
  }
  return { weight: w, bias: b };
}
