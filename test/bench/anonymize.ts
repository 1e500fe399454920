/**
 * `npm run bench -- anonymize [demo|full|all] [--threads N] [--bundle DIR]`
 *
 * demo: per-face time of the whole pipeline (50 steps) with the demo bundle on this machine
 *       (builds var/bundles/demo first if it is missing), plus the median optimisation step.
 * full: the full-size FALCO step (1024 px StyleGAN2 + IR-SE50 ArcFace + FaRL ViT-B/16, fixture pattern
 *       weights, same graphs as a production bundle), measured once per model, and the projected
 *       per-face time = encoder + targets + 50 × step + render (+ the demo run's face-api / align /
 *       paste overhead when measured). Needs several GB of RAM; files go to var/bench-full (deleted).
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

async function full(threads: number | undefined, demoFig: DemoFigures | undefined): Promise<void> {
  const spec = (f: string) => loadSpec(fixturePath(f));
  // Imported here: graph building code is only needed for this figure.
  const graphs =
    (await import('../../models/falco/graphs.js')) as typeof import('../../models/falco/graphs.js');
  const w = graphs.falcoWeightsFromMaps({
    generator: spec('stylegan2_genforce_r1024.spec.json'),
    arcface: spec('arcface_irse50.spec.json'),
    farl: spec('farl_vitb16.spec.json'),
    e4e: spec('e4e_irse50.spec.json'),
  });
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

export default async function main(args: string[] = []): Promise<void> {
  const which = args[0] && !args[0].startsWith('--') ? args[0] : 'all';
  const t = arg(args, '--threads');
  const threads = t ? Number(t) : undefined;
  let d: DemoFigures | undefined;
  if (which === 'demo' || which === 'all') d = await demo(args, threads);
  if (which === 'full' || which === 'all') await full(threads, d);
}
