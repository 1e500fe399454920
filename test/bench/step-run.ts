/**
 * Child process of bench/step.ts: load step.onnx, run N steps for its batch of B faces, print wall and
 * CPU time per step and peak RSS as JSON. CPU time (user + sys of this process) is reported next to wall
 * time because wall time on a shared machine measures the neighbours as much as the step; system time and
 * minor page faults say how much of it is the kernel handing out fresh memory (what the arena removes).
 *
 * argv: file, steps, threads (0 = onnxruntime's choice), arena ('1' = the engine's setting, '0' = off).
 */
import * as E from '../../models/engine/index.js';
import { pattern } from '../../models/fixtures/pattern.js';
import { cpuTicks, stealPct } from './report.js';

const [file, n, threads, arena] = process.argv.slice(2);
const t0 = performance.now();
const s = await E.Session.create(file!, {
  ...(Number(threads) > 0 ? { threads: Number(threads) } : {}),
  arena: arena !== '0',
});
const createMs = performance.now() - t0;
const tMeta = s.inner.inputMetadata.find((m) => m.name === 't') as { shape: number[] } | undefined;
const [B, L] = tMeta!.shape as [number, number];
const code = B * L * 512;
const real = pattern('bench.real', code, -1, 1);
let t: Float32Array = pattern('bench.fake', code, -1, 1);
let m: Float32Array = new Float32Array(code);
let v: Float32Array = new Float32Array(code);
const mask = new Float32Array(B * L).map((_, i) => (i % L >= 3 && i % L < 8 ? 1 : 0));
const id = pattern('bench.id', 512 * B, -1, 1);
for (let b = 0; b < B; b++) {
  const row = id.subarray(b * 512, (b + 1) * 512);
  const norm = Math.hypot(...row);
  row.forEach((x, i) => (row[i] = x / norm));
}
const tokens = pattern('bench.tokens', B * 197 * 768, -1, 1);
const perFace = (x: number) => new Float32Array(B).fill(x);
const stepMs: number[] = [];
const cpuMs: number[] = [];
const sysMs: number[] = [];
const faults: number[] = [];
const steal: number[] = [];
for (let k = 1; k <= Number(n) + 1; k++) {
  const [bc1, bc2] = E.adamBiasCorrections(k);
  const a = performance.now();
  const r0 = process.resourceUsage();
  const t0 = cpuTicks();
  const o = await s.run({
    t,
    real,
    mask,
    m,
    v,
    lr: perFace(0.01),
    bc1: perFace(bc1),
    bc2: perFace(bc2),
    target_id: id,
    target_tokens: tokens,
    margin: perFace(0),
    lambda_id: perFace(10),
    lambda_attr: perFace(0.1),
  });
  const r1 = process.resourceUsage();
  const wall = performance.now() - a;
  const st = stealPct(t0, cpuTicks());
  const user = (r1.userCPUTime - r0.userCPUTime) / 1000;
  const sys = (r1.systemCPUTime - r0.systemCPUTime) / 1000;
  // The first run allocates onnxruntime's buffers: report steady-state steps only.
  if (k > 1) {
    stepMs.push(wall);
    cpuMs.push(user + sys);
    sysMs.push(sys);
    faults.push(r1.minorPageFault - r0.minorPageFault);
    if (st !== undefined) steal.push(st);
  }
  t = o.t_next!.data;
  m = o.m_next!.data;
  v = o.v_next!.data;
  process.stderr.write(
    `B=${B} step ${k}: ${wall.toFixed(0)} ms wall, ${(user + sys).toFixed(0)} ms cpu (${sys.toFixed(0)} sys, ${r1.minorPageFault - r0.minorPageFault} faults${st === undefined ? '' : `, steal ${st} %`}), loss ${o.loss!.data[0]!.toFixed(3)}\n`,
  );
}
console.log(
  JSON.stringify({
    B,
    createMs,
    stepMs,
    cpuMs,
    sysMs,
    faults,
    steal,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    provider: s.provider,
  }),
);
