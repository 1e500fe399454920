/**
 * `faces <image> --out <dir>`: runs detection, landmarks and FFHQ alignment on one photo and writes
 *  - `<name>.faces.png`: a contact sheet (photo with boxes, scores, the 68 landmarks, the FFHQ crop square and
 *    the paste-back mask outline; below it, every aligned crop with its landmarks);
 *  - `<name>.faces.json`: boxes, scores, landmarks and alignment matrices.
 * The sheet is drawn with sharp composites of SVG overlays and carries no metadata.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Command } from 'commander';
import sharp, { type OverlayOptions, type Sharp } from 'sharp';
import { alignFace, applyMat3, type AlignedFace } from '../pipeline/align.js';
import { FaceDetector, type DetectedFace } from '../pipeline/detect.js';
import { decodeImage, type RgbImage } from '../pipeline/image-io.js';
import { faceMask } from '../pipeline/paste.js';
import { InputError } from '../pipeline/types.js';

export interface FacesCommandOptions {
  out: string;
  size: number;
  threshold: number;
  minFaceSize: number;
  sheetWidth: number;
}

const COLORS = ['#00e5ff', '#ffea00', '#ff4081', '#76ff03', '#ff9100', '#d500f9'];

const poly = (pts: Array<[number, number]>, s: number): string =>
  pts.map(([x, y]) => `${(x * s).toFixed(1)},${(y * s).toFixed(1)}`).join(' ');

/** SVG overlay for the (scaled) photo. */
function photoOverlay(
  w: number,
  h: number,
  scale: number,
  faces: DetectedFace[],
  aligned: AlignedFace[],
): string {
  const parts: string[] = [];
  faces.forEach((f, i) => {
    const c = COLORS[i % COLORS.length];
    const { x, y, width, height } = f.box;
    const stroke = Math.max(2, Math.round(w / 500));
    parts.push(
      `<rect x="${x * scale}" y="${y * scale}" width="${width * scale}" height="${height * scale}" fill="none" stroke="${c}" stroke-width="${stroke}"/>`,
    );
    parts.push(
      `<polygon points="${poly(aligned[i].alignment.quad, scale)}" fill="none" stroke="${c}" stroke-width="1" stroke-dasharray="6,4"/>`,
    );
    const mask = faceMask(aligned[i].alignment, f.landmarks).polygon.map((p) =>
      applyMat3(aligned[i].alignment.inverse, p),
    );
    parts.push(
      `<polygon points="${poly(mask, scale)}" fill="none" stroke="#ffffff" stroke-opacity="0.7" stroke-width="1"/>`,
    );
    for (const [px, py] of f.landmarks)
      parts.push(
        `<circle cx="${(px * scale).toFixed(1)}" cy="${(py * scale).toFixed(1)}" r="${Math.max(1.5, stroke * 0.8)}" fill="${c}"/>`,
      );
    const fs = Math.max(14, Math.round(w / 60));
    parts.push(
      `<text x="${x * scale}" y="${Math.max(fs, y * scale - 4)}" font-family="sans-serif" font-size="${fs}" fill="${c}" stroke="#000" stroke-width="0.6">#${i} ${f.score.toFixed(2)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${parts.join('')}</svg>`;
}

/** SVG overlay for one aligned crop shown at `tile` px. */
function cropOverlay(tile: number, face: DetectedFace, a: AlignedFace, i: number): string {
  const s = tile / a.alignment.size;
  const c = COLORS[i % COLORS.length];
  const dots = face.landmarks
    .map((p) => applyMat3(a.alignment.forward, p))
    .map(([x, y]) => `<circle cx="${(x * s).toFixed(1)}" cy="${(y * s).toFixed(1)}" r="2" fill="${c}"/>`)
    .join('');
  const mask = poly(faceMask(a.alignment, face.landmarks).polygon, s);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${tile}" height="${tile}">${dots}<polygon points="${mask}" fill="none" stroke="#fff" stroke-opacity="0.6"/><text x="6" y="22" font-family="sans-serif" font-size="18" fill="${c}" stroke="#000" stroke-width="0.6">#${i}${a.coverage < 1 ? ` pad ${(100 - a.coverage * 100).toFixed(0)}%` : ''}</text></svg>`;
}

function rawInput(img: RgbImage): Sharp {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
}

export async function contactSheet(
  photo: RgbImage,
  faces: DetectedFace[],
  aligned: AlignedFace[],
  sheetWidth: number,
): Promise<Buffer> {
  const scale = Math.min(1, sheetWidth / photo.width);
  const pw = Math.round(photo.width * scale);
  const ph = Math.round(photo.height * scale);
  const photoPng = await rawInput(photo)
    .resize(pw, ph)
    .composite([{ input: Buffer.from(photoOverlay(pw, ph, scale, faces, aligned)), top: 0, left: 0 }])
    .png()
    .toBuffer();
  const gap = 8;
  const perRow = Math.max(1, Math.floor((pw + gap) / (256 + gap)));
  const tile = Math.min(256, Math.floor((pw - gap * (perRow - 1)) / perRow));
  const rows = Math.ceil(aligned.length / perRow);
  const height = ph + (rows ? gap + rows * (tile + gap) : 0);
  const layers: OverlayOptions[] = [{ input: photoPng, top: 0, left: 0 }];
  for (let i = 0; i < aligned.length; i++) {
    const tilePng = await rawInput(aligned[i].crop)
      .resize(tile, tile)
      .composite([{ input: Buffer.from(cropOverlay(tile, faces[i], aligned[i], i)), top: 0, left: 0 }])
      .png()
      .toBuffer();
    layers.push({
      input: tilePng,
      top: ph + gap + Math.floor(i / perRow) * (tile + gap),
      left: (i % perRow) * (tile + gap),
    });
  }
  return sharp({ create: { width: pw, height, channels: 3, background: '#202020' } })
    .composite(layers)
    .png()
    .toBuffer();
}

export async function runFaces(
  image: string,
  o: FacesCommandOptions,
): Promise<{ sheet: string; json: string; faces: number }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(image);
  } catch (err) {
    throw new InputError(
      'not-found',
      `cannot read ${image}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const t0 = performance.now();
  const decoded = await decodeImage(bytes);
  const t1 = performance.now();
  const detector = new FaceDetector({ provider: 'cpu' });
  try {
    const faces = await detector.detect(decoded.image, {
      scoreThreshold: o.threshold,
      minFaceSize: o.minFaceSize,
    });
    const t2 = performance.now();
    const aligned = faces.map((f) => alignFace(decoded.image, f.landmarks, o.size));
    const t3 = performance.now();
    await mkdir(o.out, { recursive: true });
    const stem = basename(image, extname(image));
    const sheet = join(o.out, `${stem}.faces.png`);
    const json = join(o.out, `${stem}.faces.json`);
    await writeFile(sheet, await contactSheet(decoded.image, faces, aligned, o.sheetWidth));
    const report = {
      image,
      width: decoded.width,
      height: decoded.height,
      orientation: decoded.orientation,
      inputMetadata: decoded.metadata,
      alignSize: o.size,
      timingsMs: { decode: t1 - t0, detect: t2 - t1, align: t3 - t2 },
      faces: faces.map((f, i) => ({
        index: f.index,
        score: f.score,
        box: f.box,
        landmarks: f.landmarks,
        quad: aligned[i].alignment.quad,
        forward: aligned[i].alignment.forward,
        inverse: aligned[i].alignment.inverse,
        coverage: aligned[i].coverage,
      })),
    };
    await writeFile(json, `${JSON.stringify(report, null, 1)}\n`);
    return { sheet, json, faces: faces.length };
  } finally {
    await detector.close();
  }
}

function num(name: string, min: number, max: number, integer = false) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new InputError(
        'invalid-options',
        `--${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got "${v}"`,
      );
    }
    return n;
  };
}

export function register(program: Command): void {
  program
    .command('faces')
    .description('detect faces, 68 landmarks and FFHQ crops; write a contact sheet PNG and a JSON report')
    .argument('<image>', 'JPEG, PNG or WebP photo')
    .requiredOption('--out <dir>', 'output folder')
    .option(
      '--size <n>',
      'aligned crop size N (the generator bundle uses 1024)',
      num('size', 16, 4096, true),
      256,
    )
    .option('--threshold <p>', 'detector score threshold', num('threshold', 0.01, 0.99), 0.5)
    .option(
      '--min-face-size <px>',
      'ignore faces whose box is smaller than this',
      num('min-face-size', 0, 10000),
      0,
    )
    .option('--sheet-width <px>', 'width of the contact sheet', num('sheet-width', 320, 8000, true), 1600)
    .action(async (image: string, opts: FacesCommandOptions) => {
      const r = await runFaces(image, opts);
      process.stdout.write(`${JSON.stringify(r)}\n`);
    });
}
