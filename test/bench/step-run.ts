/**
 * Child process of bench/step.ts: load step.onnx, run N steps for its batch of B faces, print wall and
 * CPU time per step and peak RSS as JSON. CPU time (user + sys of this process) is reported next to wall
 * time because wall time on a shared machine measures the neighbours as much as the step.
 */
import * as E from '../../models/engine/index.js';
import { pattern } from '../../models/fixtures/pattern.js';

const [file, n, threads] = process.argv.slice(2);
const t0 = performance.now();
const s = await E.Session.create(file!, threads ? { threads: Number(threads) } : {});
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
for (let k = 1; k <= Number(n) + 1; k++) {
  const [bc1, bc2] = E.adamBiasCorrections(k);
  const a = performance.now();
  const c = process.cpuUsage();
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
  const cu = process.cpuUsage(c);
  // The first run allocates onnxruntime's buffers: report steady-state steps only.
  if (k > 1) {
    stepMs.push(performance.now() - a);
    cpuMs.push((cu.user + cu.system) / 1000);
  }
  t = o.t_next!.data;
  m = o.m_next!.data;
  v = o.v_next!.data;
  process.stderr.write(
    `B=${B} step ${k}: ${(performance.now() - a).toFixed(0)} ms wall, ${((cu.user + cu.system) / 1000).toFixed(0)} ms cpu, loss ${o.loss!.data[0]!.toFixed(3)}\n`,
  );
}
console.log(
  JSON.stringify({
    B,
    createMs,
    stepMs,
    cpuMs,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    provider: s.provider,
  }),
);
