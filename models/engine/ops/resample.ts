/**
 * Linear resampling as constant matrices: y = A_h · x · A_wᵀ. Any separable linear resampler
 * (bilinear, antialiased bilinear, adaptive average pooling, crops) is exactly such a product, so it
 * runs as two MatMuls against constants and differentiates for free. The matrices reproduce PyTorch's
 * index and weight formulas (torch.nn.functional.interpolate / adaptive_avg_pool2d), which is what
 * torchvision's tensor transforms call.
 */
import { ShapeError, type Tensor } from '../graph.js';
import { matmul } from './matmul.js';

/** A row-major [out, in] matrix. */
export interface ResampleMatrix {
  out: number;
  in: number;
  data: Float32Array;
}

const f32 = Math.fround;

/**
 * interpolate(mode='bilinear', align_corners=False) along one axis, as torch's CPU kernels compute it
 * for float32 tensors (the index/weight arithmetic is float32, so we round like they do: with non-integer
 * scales a float64 version differs from torch by up to ~1e-5 relative).
 *
 * antialias=True always takes torch's `_upsample_bilinear2d_aa` path (also when upsampling): a
 * triangle filter of support `scale` (≥ 1) or 1, centred at scale·(i + 0.5), over the input pixels
 * [trunc(center − support + 0.5), trunc(center + support + 0.5)) clipped to the image, normalised.
 * antialias=False is `upsample_bilinear2d`: src = max(scale·(i + 0.5) − 0.5, 0), two taps.
 */
export function bilinearMatrix(inSize: number, outSize: number, antialias = false): ResampleMatrix {
  const m = new Float64Array(outSize * inSize);
  // area_pixel_compute_scale: float(in) / out.
  const scale = f32(inSize / outSize);
  if (antialias) {
    const support = scale >= 1 ? scale : 1;
    const invscale = scale >= 1 ? f32(1 / scale) : 1;
    for (let i = 0; i < outSize; i++) {
      const center = f32(scale * (i + 0.5));
      const xmin = Math.max(Math.trunc(f32(center - support) + 0.5), 0);
      const xmax = Math.min(Math.trunc(f32(center + support) + 0.5), inSize);
      const w: number[] = [];
      let total = 0;
      for (let j = xmin; j < xmax; j++) {
        const t = Math.abs(f32((f32(j - center) + 0.5) * invscale));
        const v = t < 1 ? f32(1 - t) : 0;
        w.push(v);
        total = f32(total + v);
      }
      for (let j = xmin; j < xmax; j++)
        m[i * inSize + j] = total !== 0 ? f32(w[j - xmin]! / total) : w[j - xmin]!;
    }
  } else {
    for (let i = 0; i < outSize; i++) {
      const src = Math.max(f32(scale * (i + 0.5) - 0.5), 0);
      const i0 = Math.min(Math.trunc(src), inSize - 1);
      const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
      const l1 = Math.min(Math.max(f32(src - i0), 0), 1);
      m[i * inSize + i0] += f32(1 - l1);
      m[i * inSize + i1] += l1;
    }
  }
  return { out: outSize, in: inSize, data: Float32Array.from(m) };
}

/** adaptive_avg_pool along one axis: bins [floor(i·in/out), ceil((i+1)·in/out)). */
export function adaptiveAvgMatrix(inSize: number, outSize: number): ResampleMatrix {
  const m = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    const s = Math.floor((i * inSize) / outSize);
    const e = Math.ceil(((i + 1) * inSize) / outSize);
    for (let j = s; j < e; j++) m[i * inSize + j] = 1 / (e - s);
  }
  return { out: outSize, in: inSize, data: m };
}

/** Selection of rows [start, start+size) as a matrix (a crop that composes with other resamplers). */
export function cropMatrix(inSize: number, start: number, size: number): ResampleMatrix {
  if (start < 0 || start + size > inSize)
    throw new ShapeError(`crop [${start}, ${start + size}) outside 0..${inSize}`);
  const m = new Float32Array(size * inSize);
  for (let i = 0; i < size; i++) m[i * inSize + start + i] = 1;
  return { out: size, in: inSize, data: m };
}

/** B·A: apply A then B (compose in float64 to keep the product exact to float32 rounding). */
export function composeMatrices(b: ResampleMatrix, a: ResampleMatrix): ResampleMatrix {
  if (b.in !== a.out) throw new ShapeError(`compose: ${b.in} ≠ ${a.out}`);
  const out = new Float64Array(b.out * a.in);
  for (let i = 0; i < b.out; i++)
    for (let k = 0; k < b.in; k++) {
      const v = b.data[i * b.in + k]!;
      if (v === 0) continue;
      for (let j = 0; j < a.in; j++) out[i * a.in + j] += v * a.data[k * a.in + j]!;
    }
  return { out: b.out, in: a.in, data: Float32Array.from(out) };
}

/** Apply separable resampling to the last two axes of x (…, H, W). */
export function resample2d(x: Tensor, rows: ResampleMatrix, cols: ResampleMatrix): Tensor {
  const g = x.graph;
  const [H, W] = x.shape.slice(-2) as [number, number];
  if (rows.in !== H || cols.in !== W)
    throw new ShapeError(`resample2d: matrices expect ${rows.in}×${cols.in}, input is ${x}`);
  const colsT = new Float32Array(cols.in * cols.out);
  for (let i = 0; i < cols.out; i++)
    for (let j = 0; j < cols.in; j++) colsT[j * cols.out + i] = cols.data[i * cols.in + j]!;
  let y = x;
  if (!(cols.in === cols.out && isIdentity(cols))) y = matmul(y, g.constant(colsT, [cols.in, cols.out]));
  if (!(rows.in === rows.out && isIdentity(rows))) y = matmul(g.constant(rows.data, [rows.out, rows.in]), y);
  return y;
}

function isIdentity(m: ResampleMatrix): boolean {
  for (let i = 0; i < m.out; i++)
    for (let j = 0; j < m.in; j++) if (m.data[i * m.in + j] !== (i === j ? 1 : 0)) return false;
  return true;
}

/** torch.nn.functional.interpolate(x, size, mode='bilinear', align_corners=False, antialias). */
export const resizeBilinear = (x: Tensor, h: number, w: number, antialias = false): Tensor =>
  resample2d(x, bilinearMatrix(x.shape.at(-2)!, h, antialias), bilinearMatrix(x.shape.at(-1)!, w, antialias));

/** torch.nn.AdaptiveAvgPool2d((h, w)). */
export const adaptiveAvgPool2d = (x: Tensor, h: number, w = h): Tensor =>
  resample2d(x, adaptiveAvgMatrix(x.shape.at(-2)!, h), adaptiveAvgMatrix(x.shape.at(-1)!, w));
