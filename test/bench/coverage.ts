/**
 * `npm run bench -- coverage [--modes fast,default,thorough] [--buckets size-16,rot-90,…] [--png out.png]`:
 * detection coverage on generated scenes (test/coverage/scenes.ts): recall per bucket and mode, false
 * detections per face-free image, and the detection time of a 12-MP photo per mode. One JSON line per figure;
 * the table is also rendered as a PNG (default var/bench/coverage.png) to look at.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import sharp from 'sharp';
import {
  DETECT_MODES,
  FaceDetector,
  plannedPasses,
  type DetectMode,
} from '../../functions/pipeline/detect.js';
import { FaceApi } from '../../models/faceapi/index.js';
import { ALL_BUCKETS, generateScenes, matchFaces, type Scene } from '../coverage/scenes.js';
import { report } from './report.js';

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

interface Cell {
  faces: number;
  hits: number;
  images: number;
  extra: number;
  ms: number;
  /** Process CPU time (user + system): what the machine's load does not inflate, unlike `ms`. */
  cpuMs: number;
}

/** CPU milliseconds (user + system) of this process since `from`. */
function cpuSince(from: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(from);
  return (c.user + c.system) / 1000;
}

export default async function coverage(args: string[]): Promise<void> {
  const modes = (arg(args, '--modes')?.split(',') ?? [...DETECT_MODES]) as DetectMode[];
  for (const m of modes) if (!DETECT_MODES.includes(m)) throw new RangeError(`unknown mode ${m}`);
  const buckets = arg(args, '--buckets')?.split(',') ?? ALL_BUCKETS;
  const png = arg(args, '--png') ?? 'var/bench/coverage.png';
  // Size scenes on a 3-MP canvas by default (22 faces each, the 12-MP canvas is timed apart): the thorough
  // mode on six 12-MP canvases would take the better part of an hour on this 2-core machine.
  const [cw, ch] = (arg(args, '--canvas') ?? '2000x1500').split('x').map(Number);
  const models = new FaceApi({ threads: 2 });
  const detector = new FaceDetector(models);
  let t = performance.now();
  const samples = arg(args, '--samples')?.split(',').map(Number);
  const scenes = await generateScenes({
    buckets,
    models,
    canvas: { width: cw, height: ch },
    ...(samples ? { samples } : {}),
  });
  // Load-independent cost: SSD passes per 12-MP photo and per mode, and the time of one pass now.
  const probe = scenes[0]?.image ?? { width: 512, height: 512, data: new Uint8Array(512 * 512 * 3) };
  await models.detect(probe);
  t = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < 3; i++) await models.detect(probe);
  const passMs = (performance.now() - t) / 3;
  report('coverage', 'ssd_pass', passMs, 'ms', { cpu_ms: Math.round(cpuSince(cpu0) / 3) });
  for (const mode of DETECT_MODES) {
    const n = plannedPasses(4000, 3000, mode);
    report('coverage', 'passes_12mp', n, 'passes', { mode, estimated_ms: Math.round(n * passMs) });
  }
  report('coverage', 'generate_scenes', performance.now() - t, 'ms', { scenes: scenes.length });
  const table = new Map<string, Map<DetectMode, Cell>>();
  let big: Scene | undefined;
  for (const mode of modes) {
    for (const s of scenes) {
      t = performance.now();
      const cpu0 = process.cpuUsage();
      const found = await detector.detect(s.image, { mode });
      const cpuMs = cpuSince(cpu0);
      if (process.env.COVERAGE_VERBOSE)
        console.error(
          mode,
          s.name,
          `${
            matchFaces(
              found.map((f) => f.box),
              s.faces,
            ).hits
          }/${s.faces.length}`,
          found.length,
          Math.round(performance.now() - t),
        );
      const ms = performance.now() - t;
      const m = matchFaces(
        found.map((f) => f.box),
        s.faces,
      );
      const row = table.get(s.bucket) ?? new Map<DetectMode, Cell>();
      table.set(s.bucket, row);
      const c = row.get(mode) ?? { faces: 0, hits: 0, images: 0, extra: 0, ms: 0, cpuMs: 0 };
      row.set(mode, c);
      c.faces += s.faces.length;
      c.hits += m.hits;
      c.images += 1;
      c.extra += m.extra.length;
      c.ms += ms;
      c.cpuMs += cpuMs;
    }
    for (const [bucket, row] of table) {
      const c = row.get(mode)!;
      const extra = {
        mode,
        bucket,
        faces: c.faces,
        images: c.images,
        ms_per_image: Math.round(c.ms / c.images),
        cpu_ms_per_image: Math.round(c.cpuMs / c.images),
      };
      if (c.faces > 0) report('coverage', 'recall', c.hits / c.faces, 'ratio', { ...extra, found: c.hits });
      else
        report('coverage', 'false_per_image', c.extra / c.images, 'detections', { ...extra, false: c.extra });
    }
    // 12 MP: the size-32 scene on a 4000×3000 canvas (22 faces). Sessions are warm by now.
    if (args.includes('--no-12mp')) continue;
    big ??= (await generateScenes({ buckets: ['size-32'], models }))[0];
    t = performance.now();
    const cpu0 = process.cpuUsage();
    const reps = 1;
    let last: Awaited<ReturnType<FaceDetector['detect']>> = [];
    for (let i = 0; i < reps; i++) last = await detector.detect(big.image, { mode });
    report('coverage', 'detect_12mp', (performance.now() - t) / reps, 'ms', {
      mode,
      cpu_ms: Math.round(cpuSince(cpu0) / reps),
      faces_found: matchFaces(
        last.map((f) => f.box),
        big.faces,
      ).hits,
      faces: big.faces.length,
      width: big.image.width,
      height: big.image.height,
    });
  }
  await renderTable(table, modes, png);
  await models.close();
}

/** The recall table as a picture: one row per bucket, one column per mode, red → green. */
async function renderTable(
  table: Map<string, Map<DetectMode, Cell>>,
  modes: DetectMode[],
  out: string,
): Promise<void> {
  const rowH = 26;
  const colW = 150;
  const labelW = 170;
  const rows = [...table.keys()];
  const W = labelW + colW * modes.length;
  const H = rowH * (rows.length + 1);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><rect width="100%" height="100%" fill="#fff"/>`;
  svg += `<g font-family="DejaVu Sans, sans-serif" font-size="14">`;
  modes.forEach((m, j) => {
    svg += `<text x="${labelW + j * colW + 8}" y="18" font-weight="bold">${esc(m)}</text>`;
  });
  rows.forEach((b, i) => {
    const y = rowH * (i + 1);
    svg += `<text x="6" y="${y + 18}">${esc(b)}</text>`;
    modes.forEach((m, j) => {
      const c = table.get(b)!.get(m);
      if (!c) return;
      const x = labelW + j * colW;
      let v: number;
      let text: string;
      if (c.faces > 0) {
        v = c.hits / c.faces;
        text = `${(v * 100).toFixed(1)} % (${c.hits}/${c.faces})`;
      } else {
        const fp = c.extra / c.images;
        v = Math.max(0, 1 - fp * 2);
        text = `${fp.toFixed(2)} FP/img`;
      }
      const hue = Math.round(120 * Math.max(0, Math.min(1, (v - 0.5) / 0.5)));
      svg += `<rect x="${x + 1}" y="${y + 1}" width="${colW - 2}" height="${rowH - 2}" fill="hsl(${hue},70%,75%)"/>`;
      svg += `<text x="${x + 8}" y="${y + 18}">${esc(text)}</text>`;
    });
  });
  svg += `</g></svg>`;
  mkdirSync(dirname(out), { recursive: true });
  await sharp(Buffer.from(svg)).png().toFile(out);
}
