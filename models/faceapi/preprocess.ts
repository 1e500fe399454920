/**
 * Host-side input preparation, reproducing what face-api does before each net so our ports see the same numbers:
 * crop (integer box) → zero-pad to a square → `tf.image.resizeBilinear(…, alignCorners=false,
 * halfPixelCenters=false)` → normalise → NCHW.
 *
 * The TF "legacy" bilinear resize samples source coordinate `i · in/out` (no half-pixel offset, no antialias),
 * reading the clamped neighbour at the last row/column. Padding placement differs per net: the detector pads
 * bottom/right only; the landmark and recognition nets centre the crop (`padToSquare(…, true)`: the larger half
 * `round(diff/2)` after, the rest before).
 */
export interface PixelSource {
  width: number;
  height: number;
  /** Interleaved RGB uint8. */
  data: Uint8Array;
}

export interface IntBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface SquareLayout {
  /** Side of the padded square. */
  side: number;
  /** Offset of the crop inside the square. */
  offX: number;
  offY: number;
}

/** face-api's padToSquare placement for a w×h crop. */
export function squareLayout(w: number, h: number, centered: boolean): SquareLayout {
  const side = Math.max(w, h);
  const diff = Math.abs(w - h);
  const after = Math.round(diff * (centered ? 0.5 : 1));
  const before = centered ? diff - after : 0;
  return { side, offX: w < h ? before : 0, offY: h < w ? before : 0 };
}

/**
 * Renders `box` of `src` (integer, inside the image), zero-padded to a square per `layout`, resized to n×n
 * with TF legacy bilinear, into NCHW float32 with per-channel (v - sub[c]) · mul.
 */
export function cropPadResize(
  src: PixelSource,
  box: IntBox,
  layout: SquareLayout,
  n: number,
  sub: readonly [number, number, number],
  mul: number,
  out: Float32Array = new Float32Array(3 * n * n),
  outOffset = 0,
): Float32Array {
  const S = layout.side;
  const scale = S / n;
  const W = src.width;
  const d = src.data;
  // Value of the virtual padded square at integer (sx, sy), channel c.
  const at = (sx: number, sy: number, c: number): number => {
    const cx = sx - layout.offX;
    const cy = sy - layout.offY;
    if (cx < 0 || cy < 0 || cx >= box.width || cy >= box.height) return 0;
    return d[((box.y + cy) * W + box.x + cx) * 3 + c];
  };
  const plane = n * n;
  for (let i = 0; i < n; i++) {
    const fy = i * scale;
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, S - 1);
    const ty = fy - y0;
    for (let j = 0; j < n; j++) {
      const fx = j * scale;
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, S - 1);
      const tx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const top = at(x0, y0, c) + (at(x1, y0, c) - at(x0, y0, c)) * tx;
        const bottom = at(x0, y1, c) + (at(x1, y1, c) - at(x0, y1, c)) * tx;
        out[outOffset + c * plane + i * n + j] = (top + (bottom - top) * ty - sub[c]) * mul;
      }
    }
  }
  return out;
}

/** face-api's mean RGB for the landmark and recognition nets (input is (v - mean) / 255). */
export const FACE_MEAN_RGB: [number, number, number] = [122.782, 117.001, 104.298];
