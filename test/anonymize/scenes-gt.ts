/**
 * Ground-truth face scenes for the acceptance tests: the faces face-api finds in sample1-6 at full size (all
 * 22, the issue's reference), placed at known positions and sizes or turned with the whole photo. Ground truth
 * is the full-size detection box transformed, never a detection on the scene itself, so the tests judge our
 * detector instead of trusting it. Deterministic (no randomness; sharp's resize is deterministic).
 */
import { readFileSync } from 'node:fs';
import sharp, { type OverlayOptions } from 'sharp';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { decodeImage } from '../../functions/pipeline/image-io.js';
import type { Box } from '../../functions/pipeline/types.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { samplePath } from '../faceapi/oracle.js';

export interface SampleFaces {
  sample: number;
  bytes: Buffer;
  width: number;
  height: number;
  boxes: Box[];
}

export interface Scene {
  name: string;
  png: Buffer;
  faces: Box[];
}

/** Full-size detections of sample1-6 (the ground truth every scene is derived from). */
export async function sampleFaces(): Promise<SampleFaces[]> {
  const models = new FaceApi();
  const detector = new FaceDetector(models);
  const out: SampleFaces[] = [];
  try {
    for (let i = 1; i <= 6; i++) {
      const bytes = readFileSync(samplePath(i));
      const { image } = await decodeImage(bytes);
      const faces = await detector.detect(image, { mode: 'fast' });
      out.push({
        sample: i,
        bytes,
        width: image.width,
        height: image.height,
        boxes: faces.map((f) => f.box),
      });
    }
  } finally {
    await models.close();
  }
  return out;
}

/**
 * Every sample face cut out with a margin of 0.6 box on each side, resized so its box is `widths[k]` px wide
 * (cycling), laid out on a grid over a plain background. Returns the PNG and the faces' boxes in it.
 */
export async function gridScene(samples: SampleFaces[], widths: number[], name = 'grid'): Promise<Scene> {
  const all = samples.flatMap((s) => s.boxes.map((b) => ({ s, b })));
  const maxW = Math.max(...widths);
  const cell = Math.ceil(maxW * 2.4) + 8;
  const cols = Math.min(all.length, Math.max(1, Math.floor(1600 / cell)));
  const rows = Math.ceil(all.length / cols);
  const composite: OverlayOptions[] = [];
  const faces: Box[] = [];
  for (const [k, { s, b }] of all.entries()) {
    const w = widths[k % widths.length]!;
    const scale = w / b.width;
    const left = Math.max(0, Math.floor(b.x - 0.6 * b.width));
    const top = Math.max(0, Math.floor(b.y - 0.6 * b.height));
    const right = Math.min(s.width, Math.ceil(b.x + 1.6 * b.width));
    const bottom = Math.min(s.height, Math.ceil(b.y + 1.6 * b.height));
    const outW = Math.max(1, Math.round((right - left) * scale));
    const outH = Math.max(1, Math.round((bottom - top) * scale));
    const tile = await sharp(s.bytes)
      .extract({ left, top, width: right - left, height: bottom - top })
      .resize({ width: outW, height: outH, fit: 'fill' })
      .png()
      .toBuffer();
    const cx = (k % cols) * cell + 4;
    const cy = Math.floor(k / cols) * cell + 4;
    composite.push({ input: tile, left: cx, top: cy });
    const sx = outW / (right - left);
    const sy = outH / (bottom - top);
    faces.push({
      x: cx + (b.x - left) * sx,
      y: cy + (b.y - top) * sy,
      width: b.width * sx,
      height: b.height * sy,
    });
  }
  const png = await sharp({
    create: {
      width: cols * cell + 8,
      height: rows * cell + 8,
      channels: 3,
      background: { r: 112, g: 124, b: 118 },
    },
  })
    .composite(composite)
    .png()
    .toBuffer();
  return { name, png, faces };
}

/** A sample photo turned by a multiple of 90° (pixels turned, no EXIF), and/or scaled; boxes follow. */
export async function turnedSample(s: SampleFaces, degrees: 0 | 90 | 180 | 270, scale = 1): Promise<Scene> {
  let img = sharp(s.bytes).rotate(degrees);
  const turnedW = degrees % 180 ? s.height : s.width;
  const w = Math.round(turnedW * scale);
  if (scale !== 1) img = img.resize({ width: w });
  const png = await img.png().toBuffer();
  const meta = await sharp(png).metadata();
  const sx = meta.width! / turnedW;
  const sy = meta.height! / (degrees % 180 ? s.width : s.height);
  const faces = s.boxes.map((b): Box => {
    // Clockwise turns: (x, y) → 90: (H − y, x); 180: (W − x, H − y); 270: (y, W − x), on box corners.
    let r: Box;
    if (degrees === 90) r = { x: s.height - b.y - b.height, y: b.x, width: b.height, height: b.width };
    else if (degrees === 180)
      r = { x: s.width - b.x - b.width, y: s.height - b.y - b.height, width: b.width, height: b.height };
    else if (degrees === 270) r = { x: b.y, y: s.width - b.x - b.width, width: b.height, height: b.width };
    else r = { ...b };
    return { x: r.x * sx, y: r.y * sy, width: r.width * sx, height: r.height * sy };
  });
  return {
    name: `sample${s.sample}${degrees ? `-rot${degrees}` : ''}${scale !== 1 ? `-x${scale}` : ''}`,
    png,
    faces,
  };
}

/**
 * How much a face region changed: share of the box core's pixels (inset 20 % per side) whose largest channel
 * difference exceeds 12, and the mean absolute difference there.
 */
export function faceChange(
  before: { data: Uint8Array; width: number },
  after: { data: Uint8Array },
  b: Box,
): { changed: number; meanAbs: number } {
  let n = 0;
  let changed = 0;
  let sum = 0;
  for (let y = Math.ceil(b.y + 0.2 * b.height); y < b.y + 0.8 * b.height; y++)
    for (let x = Math.ceil(b.x + 0.2 * b.width); x < b.x + 0.8 * b.width; x++) {
      const i = (y * before.width + x) * 3;
      let m = 0;
      for (let c = 0; c < 3; c++) {
        const d = Math.abs(before.data[i + c]! - after.data[i + c]!);
        sum += d;
        m = Math.max(m, d);
      }
      n++;
      if (m > 12) changed++;
    }
  return { changed: changed / Math.max(1, n), meanAbs: sum / Math.max(1, 3 * n) };
}
