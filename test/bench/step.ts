/**
 * `npm run bench -- step [full|r256|all] [--batch 1,2,4] [--steps N] [--rows a:b|all]`: the FALCO
 * optimisation step (G → ArcFace + FaRL → loss → backward → Adam) exactly as a bundle's step.onnx runs
 * it, with full-size pattern weights, for batches of B faces.
 *
 * full: 1024-px generator + IR-SE50 + ViT-B/16. r256: the same with a 256-px generator.
 * Per B: median wall and CPU time per step, per-face throughput (faces·steps/s) and its ratio to B = 1,
 * peak RSS, and for full size at B = 1 the ratio to the upstream PyTorch step measured side by side on
 * this machine type (UPSTREAM_STEP_S). The step is built with the backward pruned to FALCO's trainable
 * rows [3, 8) (`models build --trainable 3:8`) unless `--rows all`.
 *
 * Each model is built and saved first; the steps run in a child process so its peak RSS is the
 * session's alone (graph building holds every weight on the JS heap, which a worker never does). A
 * batch whose projected peak (B × the B = 1 peak) exceeds the free memory is skipped with a line
 * saying so rather than pushing a shared machine into swap or the OOM killer.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';
import * as E from '../../models/engine/index.js';
import { FULL_SIZES, generatorLayout } from '../../models/bundle/demo-weights.js';
import { type StepWeights, buildStepGraph, falcoWeightsFromStepMaps } from '../../models/falco/graphs.js';
import { REPO_ROOT, fixturePath } from '../../models/fixtures/paths.js';
import { loadSpec, specTensor } from '../../models/fixtures/spec.js';
import type { Tensor } from '../../models/checkpoint/tensor.js';
import { report } from './report.js';

/**
 * Upstream FALCO step (PyTorch 1.13, oneDNN + OpenBLAS, 2 threads, batch 1, full size), measured side
 * by side with ours on this 2-core machine type in alternating runs: 14.0–14.2 s (issue #15).
 */
export const UPSTREAM_STEP_S = 14.1;

function generatorMap(resolution: number): Map<string, Tensor> | ReturnType<typeof loadSpec> {
  if (resolution === 1024) return loadSpec(fixturePath('stylegan2_genforce_r1024.spec.json'));
  const entries = generatorLayout({ ...FULL_SIZES, generator: { ...FULL_SIZES.generator, resolution } });
  return new Map(entries.map((e) => [e.key, specTensor(e)]));
}

interface RunResult {
  B: number;
  createMs: number;
  stepMs: number[];
  cpuMs: number[];
  maxRssMb: number;
  provider: string;
}

const median = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)]!;

function runChild(file: string, steps: number): RunResult {
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'test/bench/step-run.ts'), file, String(steps)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
  );
  if (child.status !== 0) throw new Error(`step runner failed (${child.status})`);
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!) as RunResult;
}

async function one(
  name: string,
  resolution: number,
  batches: number[],
  steps: number,
  rows: [number, number] | undefined,
): Promise<void> {
  const dir = join(REPO_ROOT, 'var', 'bench-step', name);
  mkdirSync(dir, { recursive: true });
  const w: StepWeights = falcoWeightsFromStepMaps({
    generator: generatorMap(resolution),
    arcface: loadSpec(fixturePath('arcface_irse50.spec.json')),
    farl: loadSpec(fixturePath('farl_vitb16.spec.json')),
  });
  let base: { wall: number; cpu: number; rss: number } | undefined;
  for (const B of batches) {
    const meta = { resolution, batch: B, rows: rows ? `${rows[0]}:${rows[1]}` : 'all' };
    if (base && base.rss * B > freemem() / 2 ** 20) {
      report('step', `${name}_b${B}_skipped`, base.rss * B, 'MB', {
        ...meta,
        reason: `projected peak RSS ${base.rss * B} MB > free memory ${Math.round(freemem() / 2 ** 20)} MB`,
      });
      continue;
    }
    const t0 = performance.now();
    const file = join(dir, `step_b${B}.onnx`);
    const { dataBytes } = E.save(buildStepGraph(w, { batch: B, ...(rows ? { gradRows: rows } : {}) }), file);
    report('step', `${name}_b${B}_build_and_save`, performance.now() - t0, 'ms', {
      ...meta,
      weights_mb: +(dataBytes / 2 ** 20).toFixed(0),
    });
    const r = runChild(file, steps);
    rmSync(file, { force: true });
    rmSync(`${file}.data`, { force: true });
    const wall = median(r.stepMs);
    const cpu = median(r.cpuMs);
    const m = { ...meta, provider: r.provider, steps: r.stepMs.length };
    report('step', `${name}_b${B}_step_median`, wall, 'ms', m);
    report('step', `${name}_b${B}_step_cpu_median`, cpu, 'ms', m);
    report('step', `${name}_b${B}_faces_per_s`, (1000 * B) / wall, 'face-steps/s', m);
    report('step', `${name}_b${B}_peak_rss`, r.maxRssMb, 'MB', m);
    if (!base) {
      base = { wall, cpu, rss: r.maxRssMb };
      if (resolution === 1024)
        report('step', `${name}_b1_vs_upstream_pytorch`, (UPSTREAM_STEP_S * 1000) / wall, '×', {
          ...m,
          upstream_s: UPSTREAM_STEP_S,
        });
    } else {
      report('step', `${name}_b${B}_throughput_vs_b1`, base.wall / (wall / B), '×', m);
      report('step', `${name}_b${B}_cpu_throughput_vs_b1`, base.cpu / (cpu / B), '×', m);
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export default async function main(args: string[]): Promise<void> {
  const which = args[0] && !args[0].startsWith('--') ? args[0] : 'all';
  const batches = (flag(args, '--batch') ?? '1,2,4').split(',').map(Number);
  if (batches.some((b) => !Number.isInteger(b) || b < 1))
    throw new Error(`--batch expects integers ≥ 1 separated by commas, got ${flag(args, '--batch')}`);
  const rowsArg = flag(args, '--rows') ?? '3:8';
  const rows = rowsArg === 'all' ? undefined : (rowsArg.split(':').map(Number) as [number, number]);
  const steps = Number(flag(args, '--steps') ?? 3);
  if (which === 'r256' || which === 'all') await one('g256', 256, batches, steps, rows);
  if (which === 'full' || which === 'all') await one('full_1024', 1024, batches, steps, rows);
}
