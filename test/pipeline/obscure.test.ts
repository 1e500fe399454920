/** Fallback covers (functions/pipeline/obscure.ts): region geometry, and what each method leaves of a face. */
import { describe, expect, it } from 'vitest';
import {
  fallbackRegion,
  obscureFace,
  obscureRegion,
  PIXELATE_BLOCKS,
} from '../../functions/pipeline/obscure.js';
import type { RgbImage } from '../../functions/pipeline/image-io.js';

/** A textured test image: every pixel different from its neighbours (a face stand-in full of detail). */
function textured(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  return { width: w, height: h, data };
}

const px = (img: RgbImage, x: number, y: number): number[] => {
  const i = (y * img.width + x) * 3;
  return [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
};

describe('fallbackRegion', () => {
  it('grows the box to the head front and clips to the image', () => {
    expect(fallbackRegion({ x: 40, y: 40, width: 20, height: 20 }, 100, 100)).toEqual({
      x0: 35,
      y0: 31,
      x1: 65,
      y1: 63,
    });
    expect(fallbackRegion({ x: -5, y: 90, width: 20, height: 20 }, 100, 100)).toEqual({
      x0: 0,
      y0: 81,
      x1: 20,
      y1: 100,
    });
    expect(fallbackRegion({ x: 200, y: 0, width: 10, height: 10 }, 100, 100)).toBeNull();
    // An extra region (a paste mask's extent) is united with it.
    expect(
      fallbackRegion({ x: 40, y: 40, width: 20, height: 20 }, 100, 100, { x0: 30, y0: 50, x1: 50, y1: 80 }),
    ).toEqual({ x0: 30, y0: 31, x1: 65, y1: 80 });
  });
});

describe('obscureRegion', () => {
  const img = textured(96, 80);
  const r = { x0: 10, y0: 12, x1: 70, y1: 62 };
  const outsideUnchanged = (out: RgbImage): void => {
    for (let y = 0; y < img.height; y++)
      for (let x = 0; x < img.width; x++)
        if (x < r.x0 || x >= r.x1 || y < r.y0 || y >= r.y1) expect(px(out, x, y)).toEqual(px(img, x, y));
  };

  it('pixelate: a mosaic of few noisy blocks, nothing outside touched, deterministic per seed', () => {
    const out = obscureRegion(img, r, 'pixelate', 1);
    outsideUnchanged(out);
    const block = Math.ceil(60 / PIXELATE_BLOCKS);
    const colours = new Set<string>();
    for (let y = r.y0; y < r.y1; y++)
      for (let x = r.x0; x < r.x1; x++) {
        // Every pixel equals its block's top-left pixel.
        const bx = r.x0 + Math.floor((x - r.x0) / block) * block;
        const by = r.y0 + Math.floor((y - r.y0) / block) * block;
        expect(px(out, x, y)).toEqual(px(out, bx, by));
        colours.add(px(out, x, y).join());
      }
    expect(colours.size).toBeLessThanOrEqual(PIXELATE_BLOCKS * PIXELATE_BLOCKS);
    // The noise moves the block colours off the plain block means (which all sit near 127 here).
    const spread = [...colours].map((c) => Number(c.split(',')[0]));
    expect(Math.max(...spread) - Math.min(...spread)).toBeGreaterThan(20);
    expect(
      Buffer.compare(Buffer.from(obscureRegion(img, r, 'pixelate', 1).data), Buffer.from(out.data)),
    ).toBe(0);
    expect(
      Buffer.compare(Buffer.from(obscureRegion(img, r, 'pixelate', 2).data), Buffer.from(out.data)),
    ).not.toBe(0);
    // The input is never modified.
    expect(px(img, 20, 20)).toEqual(px(textured(96, 80), 20, 20));
  });

  it('fill: one flat colour (the region mean)', () => {
    const out = obscureRegion(img, r, 'fill');
    outsideUnchanged(out);
    const c = px(out, r.x0, r.y0);
    for (let y = r.y0; y < r.y1; y++) for (let x = r.x0; x < r.x1; x++) expect(px(out, x, y)).toEqual(c);
    expect(Math.abs(c[0]! - 127.5)).toBeLessThan(8);
  });

  it('blur: removes the detail (pixel-to-pixel variation) inside the region only', () => {
    const out = obscureRegion(img, r, 'blur');
    outsideUnchanged(out);
    const tv = (im: RgbImage): number => {
      let s = 0;
      for (let y = r.y0 + 8; y < r.y1 - 8; y++)
        for (let x = r.x0 + 8; x < r.x1 - 9; x++) s += Math.abs(px(im, x + 1, y)[1]! - px(im, x, y)[1]!);
      return s;
    };
    expect(tv(out)).toBeLessThan(tv(img) / 50);
  });

  it('obscureFace covers the expanded box and reports it', () => {
    const { image, region } = obscureFace(img, { x: 30, y: 30, width: 20, height: 20 }, 'fill');
    expect(region).toEqual({ x0: 25, y0: 21, x1: 55, y1: 53 });
    expect(px(image, 25, 21)).toEqual(px(image, 54, 52));
    expect(px(image, 24, 21)).toEqual(px(img, 24, 21));
  });
});
