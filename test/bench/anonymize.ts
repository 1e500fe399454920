/**
 * `npm run bench -- anonymize [demo|full|e2e|all] [--threads N] [--bundle DIR] [--steps N] [--batch B]`
 *
 * demo: per-face time of the whole pipeline (50 steps) with the demo bundle on this machine
 *       (builds var/bundles/demo first if it is missing), plus the median optimisation step.
 * full: the full-size FALCO step (1024 px StyleGAN2 + IR-SE50 ArcFace + FaRL ViT-B/16, fixture pattern
 *       weights, same graphs as a production bundle), measured once per model, and the projected
 *       per-face time = encoder + targets + 50 × step + render (+ the demo run's face-api / align /
 *       paste overhead when measured). Needs several GB of RAM; files go to var/bench-full (deleted).
 * e2e:  the real end-to-end time (createAnonymizer → anonymize: decode, detection, e4e, targets, pool,
 *       the steps, render, paste, privacy and residual checks, encode) of a one-face photo and of a
 *       five-face photo (face crops of the face-api samples side by side) through a full-size bundle
 *       with pattern weights, built once into var/bench-e2e-bundle (kept: ~2 GB; delete to rebuild).
 *       `--steps N` (default 50) runs fewer steps on a slow machine; the 50-step figure is then
 *       extrapolated from the measured steps and marked `extrapolated: true`. The bundle's privacy retries
 *       are set to 0 (pattern weights cannot move identity, so every face would be retried twice: the
 *       figure is one attempt per face; a retry costs another `steps` steps). `--batch B` builds
 *       step_b{B}.onnx too and batches the five faces (batchFaces = B).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as E from '../../models/engine/index.js';
import { DEFAULT_DEMO_BUNDLE, buildDemoBundle } from '../../models/bundle/demo.js';
import { REPO_ROOT, fixturePath } from '../../models/fixtures/paths.js';
import { loadSpec } from '../../models/fixtures/spec.js';
import { pattern } from '../../models/fixtures/pattern.js';
import { MODEL_FILES } from '../../models/falco/contract.js';
import { createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { FaceDetector } from '../../functions/pipeline/detect.js';
import { decodeImage } from '../../functions/pipeline/image-io.js';
import { assembleBundle } from '../../models/bundle/build.js';
import { readManifest, writeManifest } from '../../models/bundle/manifest.js';
import { buildPool } from '../../models/bundle/pool.js';
import sharp from 'sharp';
import { report } from './report.js';

const BENCH = 'anonymize';

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

interface DemoFigures {
  perFaceMs: number;
  overheadMs: number;
}

async function demo(args: string[], threads?: number): Promise<DemoFigures | undefined> {
  const bundle = arg(args, '--bundle') ?? DEFAULT_DEMO_BUNDLE;
  if (!existsSync(join(bundle, 'manifest.json'))) {
    const t0 = performance.now();
    try {
      await buildDemoBundle({ outDir: bundle });
    } catch (e) {
      console.error(`demo bundle cannot be built: ${(e as Error).message.split('\n')[0]}`);
      return undefined;
    }
    report(BENCH, 'demo_bundle_build', performance.now() - t0, 'ms');
  }
  const a = await createAnonymizer({
    bundleDir: bundle,
    warm: true,
    ...(threads ? { engine: { threads } } : {}),
  });
  try {
    const photo = await readFile(
      join(REPO_ROOT, 'node_modules', '@vladmandic', 'face-api', 'demo', 'sample2.jpg'),
    );
    await a.anonymize(photo, { steps: 2 }); // warm-up: first runs allocate arenas
    const t0 = performance.now();
    const res = await a.anonymize(photo, { steps: 50, format: 'png' });
    const wall = performance.now() - t0;
    const faces = res.report.faces;
    if (!faces.length) throw new Error('the benchmark photo has no detected face');
    const perFace = faces.map((f) => Object.values(f.timingsMs).reduce((x, y) => x + y, 0));
    const opt = faces.map((f) => f.timingsMs['optimize'] ?? 0);
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    const provider = await a.engine.provider();
    const extra = {
      bundle: res.report.bundle.id,
      resolution: a.engine.N,
      faces: faces.length,
      provider,
      threads: threads ?? 'default',
    };
    const p = a.engine.manifest.name;
    report(BENCH, `${p}_per_face_50_steps`, mean(perFace), 'ms', extra);
    report(BENCH, `${p}_step`, mean(opt) / 50, 'ms', extra);
    report(BENCH, `${p}_image_wall`, wall, 'ms', extra);
    return {
      perFaceMs: mean(perFace),
      overheadMs:
        mean(perFace) -
        mean(opt) -
        mean(
          faces.map(
            (f) =>
              (f.timingsMs['invert'] ?? 0) + (f.timingsMs['targets'] ?? 0) + (f.timingsMs['render'] ?? 0),
          ),
        ),
    };
  } finally {
    await a.close();
  }
}

/**
 * The graph builders and FALCO's full-size pattern weights (the goldens' specs). Imported on demand: graph
 * building code is only needed for the full-size figures.
 */
async function fullPatternWeights() {
  const spec = (f: string) => loadSpec(fixturePath(f));
  const graphs =
    (await import('../../models/falco/graphs.js')) as typeof import('../../models/falco/graphs.js');
  const w = graphs.falcoWeightsFromMaps({
    generator: spec('stylegan2_genforce_r1024.spec.json'),
    arcface: spec('arcface_irse50.spec.json'),
    farl: spec('farl_vitb16.spec.json'),
    e4e: spec('e4e_irse50.spec.json'),
  });
  return { graphs, w };
}

async function full(threads: number | undefined, demoFig: DemoFigures | undefined): Promise<void> {
  const { graphs, w } = await fullPatternWeights();
  const dir = join(REPO_ROOT, 'var', 'bench-full');
  await mkdir(dir, { recursive: true });
  const opts = { provider: 'auto' as const, ...(threads ? { threads } : {}) };
  const L = 18;
  const N = 1024;
  const code = pattern('bench.code', L * 512, -1, 1);
  const img = (n: number) => pattern(`bench.img${n}`, 3 * n * n, -1, 1);
  const time = async (
    name: keyof typeof MODEL_FILES,
    feeds: Record<string, Float32Array>,
    reps: number,
  ): Promise<number> => {
    let t = performance.now();
    await graphs.writeFalcoModels(w, dir, { only: [name] });
    report(BENCH, `full_${name}_build`, performance.now() - t, 'ms');
    const s = await E.Session.create(join(dir, MODEL_FILES[name]), opts);
    try {
      await s.run(feeds); // warm-up
      const ts: number[] = [];
      for (let i = 0; i < reps; i++) {
        t = performance.now();
        await s.run(feeds);
        ts.push(performance.now() - t);
      }
      ts.sort((a, b) => a - b);
      const med = ts[Math.floor(ts.length / 2)]!;
      report(BENCH, `full_${name}`, med, 'ms', { provider: s.provider, reps, threads: threads ?? 'default' });
      return med;
    } finally {
      await s.release();
      await rm(join(dir, MODEL_FILES[name]), { force: true });
      await rm(join(dir, `${MODEL_FILES[name]}.data`), { force: true });
    }
  };
  try {
    const tgt = await time('targets', { image: img(N) }, 1);
    const enc = await time('encoder', { image: img(256) }, 1);
    const ren = await time('render', { wp: code }, 1);
    const mask = new Float32Array(L).map((_, i) => (i >= 3 && i < 8 ? 1 : 0));
    const step = await time(
      'step',
      {
        t: code,
        real: code,
        mask,
        m: new Float32Array(L * 512),
        v: new Float32Array(L * 512),
        lr: Float32Array.of(0.01),
        bc1: Float32Array.of(0.1),
        bc2: Float32Array.of(Math.sqrt(0.001)),
        target_id: pattern('bench.id', 512, -0.05, 0.05),
        target_tokens: pattern('bench.tok', 197 * 768, -1, 1),
        margin: Float32Array.of(0),
        lambda_id: Float32Array.of(10),
        lambda_attr: Float32Array.of(0.1),
      },
      2,
    );
    const overhead = demoFig?.overheadMs ?? 0;
    report(BENCH, 'full_projected_per_face_50_steps', enc + tgt + 50 * step + ren + overhead, 'ms', {
      formula: 'encoder + targets + 50·step + render + demo face-api/align/paste overhead',
      overheadMs: Math.round(overhead),
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const SAMPLES = join(REPO_ROOT, 'node_modules', '@vladmandic', 'face-api', 'demo');

/** A one-face photo and a five-face photo: the largest face of sample1..5, cropped wide, side by side. */
async function facePhotos(faceapiDir: string): Promise<{ one: Buffer; five: Buffer }> {
  const det = new FaceDetector({ modelDir: faceapiDir });
  const side = 480;
  const crops: Buffer[] = [];
  try {
    for (let k = 1; crops.length < 5 && k <= 6; k++) {
      const bytes = await readFile(join(SAMPLES, `sample${k}.jpg`));
      const faces = await det.detect((await decodeImage(bytes)).image, { mode: 'fast' });
      const f = faces.sort((a, b) => b.box.width - a.box.width)[0];
      if (!f) continue;
      const meta = await sharp(bytes).metadata();
      const size = Math.min(meta.width!, meta.height!, Math.round(f.box.width * 2.4));
      const cx = f.box.x + f.box.width / 2;
      const cy = f.box.y + f.box.height / 2;
      const left = Math.round(Math.min(Math.max(0, cx - size / 2), meta.width! - size));
      const top = Math.round(Math.min(Math.max(0, cy - size / 2), meta.height! - size));
      crops.push(
        await sharp(bytes)
          .extract({ left, top, width: size, height: size })
          .resize(side, side)
          .png()
          .toBuffer(),
      );
    }
  } finally {
    await det.close();
  }
  if (crops.length < 5) throw new Error(`found faces in only ${crops.length} of the face-api samples`);
  const five = await sharp({
    create: { width: side * 5, height: side, channels: 3, background: { r: 128, g: 128, b: 128 } },
  })
    .composite(crops.map((input, i) => ({ input, left: i * side, top: 0 })))
    .png()
    .toBuffer();
  return { one: crops[0]!, five };
}

/** The full-size pattern-weight bundle (all five models, face-api, human, a 2-fake pool), built once. */
async function e2eBundle(batch: number): Promise<string> {
  const dir = join(REPO_ROOT, 'var', 'bench-e2e-bundle');
  const stepB = join(dir, `step_b${batch}.onnx`);
  if (existsSync(join(dir, 'manifest.json')) && (batch < 2 || existsSync(stepB))) return dir;
  const t0 = performance.now();
  const { graphs, w } = await fullPatternWeights();
  const comp = { source: 'fixture pattern weights', sha256: '0'.repeat(64), license: 'test' };
  await assembleBundle({
    outDir: dir,
    name: 'bench-e2e',
    demo: true,
    components: { generator: comp, e4e: comp, arcface: comp, farl: comp },
    // FALCO's trainable rows, as a production build with --trainable 3:8 (the pruned backward).
    trainable: [3, 8],
    writeModels: async (d) => {
      await graphs.writeFalcoModels(w, d, {
        trainable: [3, 8],
        ...(batch > 1 ? { stepBatches: [batch] } : {}),
      });
    },
  });
  await buildPool(dir, { n: 2, seed: 0 });
  const m = await readManifest(dir);
  m.reid = { ...m.reid, retries: 0 };
  await writeManifest(dir, m);
  report(BENCH, 'e2e_bundle_build', performance.now() - t0, 'ms', { batch });
  return dir;
}

async function e2e(args: string[], threads?: number): Promise<void> {
  const steps = Number(arg(args, '--steps') ?? 50);
  const batch = Number(arg(args, '--batch') ?? 1);
  if (!Number.isInteger(steps) || steps < 1 || steps > 50)
    throw new Error(`--steps expects an integer in 1..50, got ${arg(args, '--steps')}`);
  const dir = await e2eBundle(batch);
  const photos = await facePhotos(join(dir, 'faceapi'));
  const a = await createAnonymizer({
    bundleDir: dir,
    warm: true,
    detect: { mode: 'fast' },
    residualDetect: { mode: 'fast' },
    batchFaces: batch,
    ...(threads ? { engine: { threads } } : {}),
  });
  try {
    const provider = await a.engine.provider();
    // Warm-up: the first step run lays out the step session's arena (a worker pays it once, at its first
    // image); the figures below are a warm worker's.
    await a.anonymize(photos.one, { steps: 1, format: 'png' });
    for (const [name, photo] of [
      ['one_face', photos.one],
      ['five_faces', photos.five],
    ] as const) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const res = await a.anonymize(photo, { steps, format: 'png' });
      const cu = process.cpuUsage(c0);
      const wall = performance.now() - t0;
      const falco = res.report.faces.filter((f) => f.losses.length > 0);
      // Per face the steps ran `steps` times; batched faces share their group's wall time. step_ms is the
      // mean over the image's steps, so the extrapolation below assumes later steps cost the same.
      const optMs = falco.reduce((x, f) => x + (f.timingsMs['optimize'] ?? 0), 0) / Math.max(1, batch);
      const stepMs = optMs / Math.max(1, falco.length / batch) / steps;
      const extra = {
        resolution: a.engine.N,
        faces: res.report.faces.length,
        falco_faces: falco.length,
        steps,
        batch,
        retries: 0,
        provider,
        threads: threads ?? 'default',
        detect: 'fast',
        cpu_ms: Math.round((cu.user + cu.system) / 1000),
        step_ms: Math.round(stepMs),
        // The whole process: every session of the bundle, face-api and the step arena.
        peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
        timings_ms: res.report.timingsMs,
      };
      report(BENCH, `e2e_${name}_${steps}_steps`, wall, 'ms', extra);
      if (steps < 50) {
        const groups = Math.ceil(falco.length / batch);
        report(BENCH, `e2e_${name}_50_steps`, wall + (50 - steps) * stepMs * groups, 'ms', {
          ...extra,
          extrapolated: true,
          formula: `measured + (50 - ${steps}) × step_ms × ${groups} step runs per step`,
        });
      }
    }
  } finally {
    await a.close();
  }
}

export default async function main(args: string[] = []): Promise<void> {
  const which = args[0] && !args[0].startsWith('--') ? args[0] : 'all';
  const t = arg(args, '--threads');
  const threads = t ? Number(t) : undefined;
  let d: DemoFigures | undefined;
  if (which === 'demo' || which === 'all') d = await demo(args, threads);
  if (which === 'full' || which === 'all') await full(threads, d);
  if (which === 'e2e' || which === 'all') await e2e(args, threads);
}
