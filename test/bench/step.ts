/**
 * `npm run bench -- step [full|r256|all]`: the FALCO optimisation step (G → ArcFace + FaRL → loss →
 * backward → Adam) exactly as a bundle's step.onnx runs it, with full-size pattern weights.
 *
 * full: 1024-px generator + IR-SE50 + ViT-B/16, batch 1 — time per step and peak memory.
 * r256: the same with a 256-px generator, 50 steps (a whole face's optimisation).
 *
 * The model is built and saved first; the steps run in a child process so its peak RSS is the
 * session's alone (graph building holds every weight on the JS heap, which a worker never does).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as E from '../../models/engine/index.js';
import { FULL_SIZES, generatorLayout } from '../../models/bundle/demo-weights.js';
import { buildStepGraph, falcoWeightsFromStepMaps } from '../../models/falco/graphs.js';
import { REPO_ROOT, fixturePath } from '../../models/fixtures/paths.js';
import { loadSpec, specTensor } from '../../models/fixtures/spec.js';
import type { Tensor } from '../../models/checkpoint/tensor.js';
import { report } from './report.js';

function generatorMap(resolution: number): Map<string, Tensor> | ReturnType<typeof loadSpec> {
  if (resolution === 1024) return loadSpec(fixturePath('stylegan2_genforce_r1024.spec.json'));
  const entries = generatorLayout({ ...FULL_SIZES, generator: { ...FULL_SIZES.generator, resolution } });
  return new Map(entries.map((e) => [e.key, specTensor(e)]));
}

async function one(name: string, resolution: number, steps: number): Promise<void> {
  const dir = join(REPO_ROOT, 'var', 'bench-step', name);
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const w = falcoWeightsFromStepMaps({
    generator: generatorMap(resolution),
    arcface: loadSpec(fixturePath('arcface_irse50.spec.json')),
    farl: loadSpec(fixturePath('farl_vitb16.spec.json')),
  });
  const file = join(dir, 'step.onnx');
  const { dataBytes } = E.save(buildStepGraph(w), file);
  report('step', `${name}_build_and_save`, performance.now() - t0, 'ms', {
    weights_mb: +(dataBytes / 2 ** 20).toFixed(0),
  });
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'test/bench/step-run.ts'), file, String(resolution), String(steps)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 24,
    },
  );
  if (child.status !== 0) throw new Error(`step runner failed (${child.status})`);
  const r = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as {
    createMs: number;
    stepMs: number[];
    maxRssMb: number;
    provider: string;
  };
  const sorted = [...r.stepMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const meta = { resolution, provider: r.provider, steps: r.stepMs.length };
  report('step', `${name}_session_create`, r.createMs, 'ms', meta);
  report('step', `${name}_step_median`, median, 'ms', meta);
  if (steps >= 10)
    report(
      'step',
      `${name}_${steps}_steps_total`,
      r.stepMs.reduce((a, b) => a + b, 0),
      'ms',
      meta,
    );
  report('step', `${name}_peak_rss`, r.maxRssMb, 'MB', meta);
  rmSync(dir, { recursive: true, force: true });
}

export default async function main(args: string[]): Promise<void> {
  const which = args[0] ?? 'all';
  if (which === 'full' || which === 'all') await one('full_1024', 1024, 3);
  if (which === 'r256' || which === 'all') await one('g256', 256, 50);
}
