/**
 * `npm run bench -- step [full|r256|all] [--batch 1,2,4] [--steps N] [--rows a:b|all] [--threads N]
 * [--no-arena]`: the FALCO optimisation step (G → ArcFace + FaRL → loss → backward → Adam) exactly as a
 * bundle's step.onnx runs it, with full-size pattern weights, for batches of B faces.
 *
 * full: 1024-px generator + IR-SE50 + ViT-B/16. r256: the same with a 256-px generator.
 * First the machine probe (bench/machine.ts: measured fp32 GEMM rate at the same threads, CPU model, SIMD
 * flags), so a figure can be held against the machine it was measured on. Per B: median wall and CPU time
 * per step (and the system time and page faults inside it), per-face throughput and its ratio to B = 1,
 * peak RSS, the step's dense FLOPs (models/engine/cost.ts) and the share of the machine's GEMM rate it
 * achieves, by wall time (meaningful on a quiet machine only) and by CPU time (robust to neighbours). For
 * full size at B = 1 the ratio to the upstream PyTorch step is reported with the machine that figure
 * comes from: it was measured on another CPU (AVX-512), so it is only a like-for-like ratio there.
 * The step is built with the backward pruned to FALCO's trainable rows [3, 8) (`models build
 * --trainable 3:8`) unless `--rows all`; threads default to the core count (what the worker gets), the
 * CPU arena to the engine's setting for the step session (on; `--no-arena` for the A/B).
 *
 * Each model is built and saved first; the steps run in a child process so its peak RSS is the
 * session's alone (graph building holds every weight on the JS heap, which a worker never does). A
 * batch whose projected peak (B × the B = 1 peak) exceeds the free memory is skipped with a line
 * saying so rather than pushing a shared machine into swap or the OOM killer.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus, freemem } from 'node:os';
import { join } from 'node:path';
import * as E from '../../models/engine/index.js';
import { FULL_SIZES, generatorLayout } from '../../models/bundle/demo-weights.js';
import { type StepWeights, buildStepGraph, falcoWeightsFromStepMaps } from '../../models/falco/graphs.js';
import { REPO_ROOT, fixturePath } from '../../models/fixtures/paths.js';
import { loadSpec, specTensor } from '../../models/fixtures/spec.js';
import type { Tensor } from '../../models/checkpoint/tensor.js';
import { report } from './report.js';
import { type MachineSpeed, probeMachine } from './machine.js';

/**
 * Upstream FALCO step (PyTorch 1.13, oneDNN + OpenBLAS, 2 threads, batch 1, full size), measured side
 * by side with ours in alternating runs: 14.0–14.2 s (issue #15) — on a 2-core AVX-512 machine, not
 * necessarily the one this bench runs on (the development machine later turned out to be AVX2-only).
 */
export const UPSTREAM_STEP_S = 14.1;
export const UPSTREAM_MACHINE = '2-core x86 with AVX-512 (issue #15 anchor); ours was 3.42 s there';

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
  sysMs: number[];
  faults: number[];
  /** Machine-wide steal time during each step, % (empty off Linux). */
  steal: number[];
  maxRssMb: number;
  provider: string;
}

const median = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)]!;

interface RunConfig {
  steps: number;
  threads: number;
  arena: boolean;
  machine: MachineSpeed;
}

function runChild(file: string, c: RunConfig): RunResult {
  const child = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO_ROOT, 'test/bench/step-run.ts'),
      file,
      String(c.steps),
      String(c.threads),
      c.arena ? '1' : '0',
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
  );
  if (child.status !== 0) throw new Error(`step runner failed (${child.status})`);
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!) as RunResult;
}

async function one(
  name: string,
  resolution: number,
  batches: number[],
  c: RunConfig,
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
    const meta = {
      resolution,
      batch: B,
      rows: rows ? `${rows[0]}:${rows[1]}` : 'all',
      threads: c.threads,
      arena: c.arena,
    };
    if (base && base.rss * B > freemem() / 2 ** 20) {
      report('step', `${name}_b${B}_skipped`, base.rss * B, 'MB', {
        ...meta,
        reason: `projected peak RSS ${base.rss * B} MB > free memory ${Math.round(freemem() / 2 ** 20)} MB`,
      });
      continue;
    }
    const t0 = performance.now();
    const file = join(dir, `step_b${B}.onnx`);
    const graph = buildStepGraph(w, { batch: B, ...(rows ? { gradRows: rows } : {}) });
    const flops = E.denseFlops(graph).total;
    const { dataBytes } = E.save(graph, file);
    report('step', `${name}_b${B}_build_and_save`, performance.now() - t0, 'ms', {
      ...meta,
      weights_mb: +(dataBytes / 2 ** 20).toFixed(0),
    });
    report('step', `${name}_b${B}_dense_gflop`, flops / 1e9, 'GFLOP', meta);
    const r = runChild(file, c);
    rmSync(file, { force: true });
    rmSync(`${file}.data`, { force: true });
    const wall = median(r.stepMs);
    const cpu = median(r.cpuMs);
    const m = { ...meta, provider: r.provider, steps: r.stepMs.length };
    report('step', `${name}_b${B}_step_median`, wall, 'ms', {
      ...m,
      all_ms: r.stepMs.map(Math.round),
      ...(r.steal.length ? { steal_pct: r.steal } : {}),
    });
    report('step', `${name}_b${B}_step_cpu_median`, cpu, 'ms', {
      ...m,
      sys_ms: Math.round(median(r.sysMs)),
      minor_faults: median(r.faults),
      cpu_over_wall: +(cpu / wall).toFixed(2),
    });
    // Achieved dense GFLOP/s against the machine's measured GEMM rate at the same threads: by wall time
    // (what a quiet machine gives) and by CPU time (per core, robust to neighbours on a shared machine).
    const gflops = flops / 1e9 / (wall / 1000);
    const perCpu = flops / 1e9 / (cpu / 1000);
    report('step', `${name}_b${B}_gflops`, gflops, 'GFLOP/s', {
      ...m,
      fraction_of_gemm_peak: +(gflops / c.machine.gemm_gflops).toFixed(3),
      gflops_per_cpu_s: +perCpu.toFixed(1),
      cpu_fraction_of_gemm: +(perCpu / c.machine.gemm_gflops_per_cpu_s).toFixed(3),
      machine_gemm_gflops: c.machine.gemm_gflops,
      machine_gemm_gflops_per_cpu_s: c.machine.gemm_gflops_per_cpu_s,
    });
    report('step', `${name}_b${B}_faces_per_s`, (1000 * B) / wall, 'face-steps/s', m);
    report('step', `${name}_b${B}_peak_rss`, r.maxRssMb, 'MB', m);
    if (!base) {
      base = { wall, cpu, rss: r.maxRssMb };
      // Only a like-for-like ratio on the machine the upstream figure was measured on; elsewhere it says
      // as much, and the GEMM-rate fields above are what compares machines.
      if (resolution === 1024)
        report('step', `${name}_b1_vs_upstream_reference`, (UPSTREAM_STEP_S * 1000) / wall, '×', {
          ...m,
          upstream_s: UPSTREAM_STEP_S,
          upstream_machine: UPSTREAM_MACHINE,
          this_machine: `${c.machine.cpu_model} (${c.machine.simd.join(' ')})`,
          same_isa_as_reference: c.machine.simd.includes('avx512f'),
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
  const threads = Number(flag(args, '--threads') ?? cpus().length);
  const machine = await probeMachine(threads);
  const { gemm_gflops, ...info } = machine;
  report('step', 'machine_gemm_fp32_gflops', gemm_gflops, 'GFLOP/s', info);
  const c: RunConfig = { steps, threads, arena: !args.includes('--no-arena'), machine };
  if (which === 'r256' || which === 'all') await one('g256', 256, batches, c, rows);
  if (which === 'full' || which === 'all') await one('full_1024', 1024, batches, c, rows);
}
