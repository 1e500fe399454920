/**
 * `npm run bench -- machine [--threads N]`: how fast this machine is at the arithmetic a FALCO step is made
 * of, measured with the same onnxruntime build and thread count as the step, so step figures from
 * different machines can be compared through it rather than by wall time alone.
 *
 * Figures: fp32 GEMM (2048³, one MatMul node) and a 3×3 convolution (256 → 256 channels at 128², the
 * generator's mid-resolution shape) in GFLOP/s, each the best of 5 runs after a warm-up (best, not median:
 * the probe asks what the machine can do, and on a shared machine every slower run measures a neighbour),
 * plus the CPU model, core count and SIMD flags. A step's "fraction of machine" is its dense FLOPs per
 * second (models/engine/cost.ts) over the GEMM rate: 1.0 would be a step that is all perfectly blocked
 * GEMM with no memory-bound work at all.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import ort from 'onnxruntime-node';
import * as E from '../../models/engine/index.js';
import { pattern } from '../../models/fixtures/pattern.js';
import { report } from './report.js';

export interface MachineInfo {
  cpu_model: string;
  cpu_count: number;
  /** The SIMD flags that decide MLAS's fp32 kernels (avx512f → 16-wide FMA, else avx2/fma → 8-wide). */
  simd: string[];
  ort_version: string;
  threads: number;
}

export interface MachineSpeed extends MachineInfo {
  /** Wall-clock rates at `threads` threads: the machine's peak, if nothing else runs on it. */
  gemm_gflops: number;
  conv_gflops: number;
  /**
   * GEMM FLOPs per CPU-second (one core's rate). On a shared machine the wall rate measures the neighbours
   * too; CPU time mostly does not, so `gemm_gflops_per_cpu_s × threads` is the quiet machine's rate, and a
   * step's FLOPs per CPU-second over it is its efficiency whatever the load.
   */
  gemm_gflops_per_cpu_s: number;
}

export function machineInfo(threads: number): MachineInfo {
  let flags: string[] = [];
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    flags = /^flags\s*:\s*(.*)$/m.exec(info)?.[1]?.split(/\s+/) ?? [];
    model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? model;
  } catch {
    // not Linux: the model from os.cpus() and no flags
  }
  const simd = [
    'sse4_2',
    'avx',
    'avx2',
    'fma',
    'f16c',
    'avx512f',
    'avx512bw',
    'avx512_vnni',
    'amx_tile',
  ].filter((f) => flags.includes(f));
  return { cpu_model: model, cpu_count: cpus().length, simd, ort_version: ort.env.versions.common, threads };
}

/** Best wall rate and best rate per CPU-second (GFLOP/s) of 5 runs after a warm-up. */
async function best(
  g: E.Graph,
  feeds: Record<string, Float32Array>,
  flops: number,
  threads: number,
): Promise<{ wall: number; perCpu: number }> {
  // The step's own settings: explicit threads, arena on (runs in place), no spinning.
  const s = await E.Session.create(E.toBytes(g), { provider: 'cpu', threads, arena: true });
  let ms = Infinity;
  let cpuMs = Infinity;
  await s.run(feeds);
  for (let i = 0; i < 5; i++) {
    const c = process.cpuUsage();
    const t0 = performance.now();
    await s.run(feeds);
    ms = Math.min(ms, performance.now() - t0);
    const cu = process.cpuUsage(c);
    cpuMs = Math.min(cpuMs, (cu.user + cu.system) / 1000);
  }
  await s.release();
  return { wall: flops / (ms / 1000) / 1e9, perCpu: flops / (cpuMs / 1000) / 1e9 };
}

/** Measured fp32 GEMM and conv rates at `threads` intra-op threads. */
export async function probeMachine(threads = 2): Promise<MachineSpeed> {
  const n = 2048;
  const gm = new E.Graph('probe_gemm');
  const a = gm.input('a', [n, n]);
  const b = gm.constant(pattern('probe.b', n * n, -1, 1), [n, n]);
  gm.output(E.matmul(a, b), 'y');
  const gemm = await best(gm, { a: pattern('probe.a', n * n, -1, 1) }, 2 * n ** 3, threads);

  const [c, hw] = [256, 128];
  const gc = new E.Graph('probe_conv');
  const x = gc.input('x', [1, c, hw, hw]);
  const w = gc.constant(pattern('probe.w', c * c * 9, -0.05, 0.05), [c, c, 3, 3]);
  gc.output(E.conv2d(x, w, undefined, { padding: 1 }), 'y');
  const conv = await best(
    gc,
    { x: pattern('probe.x', c * hw * hw, -1, 1) },
    2 * c * c * 9 * hw * hw,
    threads,
  );
  return {
    ...machineInfo(threads),
    gemm_gflops: +gemm.wall.toFixed(1),
    conv_gflops: +conv.wall.toFixed(1),
    gemm_gflops_per_cpu_s: +gemm.perCpu.toFixed(1),
  };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export default async function main(args: string[]): Promise<void> {
  const threads = Number(flag(args, '--threads') ?? 2);
  const m = await probeMachine(threads);
  const { gemm_gflops, conv_gflops, gemm_gflops_per_cpu_s, ...info } = m;
  report('machine', 'gemm_fp32_gflops', gemm_gflops, 'GFLOP/s', { ...info, shape: '2048x2048x2048' });
  report('machine', 'gemm_fp32_gflops_per_cpu_s', gemm_gflops_per_cpu_s, 'GFLOP/cpu-s', {
    ...info,
    shape: '2048x2048x2048',
  });
  report('machine', 'conv3x3_fp32_gflops', conv_gflops, 'GFLOP/s', {
    ...info,
    shape: '256->256 ch, 128x128',
  });
}
