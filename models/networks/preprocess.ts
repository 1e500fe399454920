/**
 * FALCO's two image pipelines on a generated/real image in [-1, 1] (NCHW), as constant resampling
 * matrices so they run as two MatMuls and differentiate for free:
 * - `id112` (ArcFace, lib/id_loss.py): torchvision `Resize(256, antialias=True)` → `CenterCrop(256)` →
 *   crop rows 35:223, cols 32:220 → `AdaptiveAvgPool2d(112)`; the whole chain is ONE matrix per axis.
 * - `farl224` (FaRL attribute loss): `Resize(224, antialias=True)` → `CenterCrop(224)`.
 * Resize follows torchvision's tensor path: the shorter side becomes `size`, the longer
 * int(size·long/short); bilinear with torch's antialias kernel (engine `bilinearMatrix`). CenterCrop's
 * offset is int(round((in − out)/2)) with Python's round-half-to-even.
 */
import type { Tensor } from '../engine/index.js';
import {
  type ResampleMatrix,
  adaptiveAvgMatrix,
  bilinearMatrix,
  composeMatrices,
  cropMatrix,
  resample2d,
} from '../engine/index.js';

export class PreprocessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PreprocessError';
  }
}

/** torchvision `_compute_resized_output_size` for an int size (no max_size): [outH, outW]. */
export function resizedSize(h: number, w: number, size: number): [number, number] {
  if (w <= h) return [Math.trunc((size * h) / w), size];
  return [size, Math.trunc((size * w) / h)];
}

/** Python's round() (half to even) of a non-negative x. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision CenterCrop offset along one axis (input ≥ output; smaller inputs would need padding). */
export function centerCropStart(inSize: number, outSize: number): number {
  if (outSize > inSize)
    throw new PreprocessError(`center crop ${outSize} larger than the image side ${inSize}`);
  return roundHalfEven((inSize - outSize) / 2);
}

/** Resize(size, antialias=True) → CenterCrop(size) along each axis: [rows, cols] matrices. */
export function resizeCenterCropMatrices(
  h: number,
  w: number,
  size: number,
): [ResampleMatrix, ResampleMatrix] {
  const [rh, rw] = resizedSize(h, w, size);
  const axis = (n: number, r: number) => {
    const resize = bilinearMatrix(n, r, true);
    return r === size ? resize : composeMatrices(cropMatrix(r, centerCropStart(r, size), size), resize);
  };
  return [axis(h, rh), axis(w, rw)];
}

/** FALCO's ArcFace crop box inside the 256×256 image (rows 35:223, cols 32:220) and pooled size. */
export const ID_RESIZE = 256;
export const ID_ROWS = [35, 223] as const;
export const ID_COLS = [32, 220] as const;
export const ID_SIZE = 112;
export const FARL_SIZE = 224;

export function id112Matrices(h: number, w: number): [ResampleMatrix, ResampleMatrix] {
  const [r256, c256] = resizeCenterCropMatrices(h, w, ID_RESIZE);
  const axis = (m: ResampleMatrix, [a, b]: readonly [number, number]) =>
    composeMatrices(adaptiveAvgMatrix(b - a, ID_SIZE), composeMatrices(cropMatrix(ID_RESIZE, a, b - a), m));
  return [axis(r256, ID_ROWS), axis(c256, ID_COLS)];
}

export const farl224Matrices = (h: number, w: number): [ResampleMatrix, ResampleMatrix] =>
  resizeCenterCropMatrices(h, w, FARL_SIZE);

function checkImage(x: Tensor, what: string): [number, number] {
  if (x.rank !== 4 || x.shape[1] !== 3)
    throw new PreprocessError(`${what}: expects an NCHW RGB image [N, 3, H, W], got ${x}`);
  const [, , h, w] = x.shape as [number, number, number, number];
  if (h < 1 || w < 1) throw new PreprocessError(`${what}: empty image ${x}`);
  return [h, w];
}

/** ArcFace input [N, 3, 112, 112] from an image [N, 3, H, W] (FALCO's IDLoss.extract_feats ∘ id_transform). */
export function id112(x: Tensor): Tensor {
  const [h, w] = checkImage(x, 'id112');
  const [rows, cols] = id112Matrices(h, w);
  return resample2d(x, rows, cols);
}

/** FaRL input [N, 3, 224, 224] before normalisation (Resize(224, antialias) → CenterCrop(224)). */
export function farl224(x: Tensor): Tensor {
  const [h, w] = checkImage(x, 'farl224');
  const [rows, cols] = farl224Matrices(h, w);
  return resample2d(x, rows, cols);
}
