/** Child process of bench/step.ts: load step.onnx, run N steps, print timings and peak RSS as JSON. */
import * as E from '../../models/engine/index.js';
import { pattern } from '../../models/fixtures/pattern.js';
import { numWLayers } from '../../models/falco/contract.js';

const [file, res, n] = process.argv.slice(2);
const L = numWLayers(Number(res));
const t0 = performance.now();
const s = await E.Session.create(file!);
const createMs = performance.now() - t0;
const code = L * 512;
const real = pattern('bench.real', code, -1, 1);
let t: Float32Array = pattern('bench.fake', code, -1, 1);
let m: Float32Array = new Float32Array(code);
let v: Float32Array = new Float32Array(code);
const mask = new Float32Array(L).map((_, i) => (i >= 3 && i < 8 ? 1 : 0));
const id = pattern('bench.id', 512, -1, 1);
const norm = Math.hypot(...id);
const targetId = id.map((x) => x / norm);
const tokens = pattern('bench.tokens', 197 * 768, -1, 1);
const stepMs: number[] = [];
for (let k = 1; k <= Number(n) + 1; k++) {
  const [bc1, bc2] = E.adamBiasCorrections(k);
  const a = performance.now();
  const o = await s.run({
    t,
    real,
    mask,
    m,
    v,
    lr: Float32Array.of(0.01),
    bc1: Float32Array.of(bc1),
    bc2: Float32Array.of(bc2),
    target_id: targetId,
    target_tokens: tokens,
    margin: Float32Array.of(0),
    lambda_id: Float32Array.of(10),
    lambda_attr: Float32Array.of(0.1),
  });
  // The first run allocates onnxruntime's arenas: report steady-state steps only.
  if (k > 1) stepMs.push(performance.now() - a);
  t = o.t_next!.data;
  m = o.m_next!.data;
  v = o.v_next!.data;
  process.stderr.write(
    `step ${k}: ${(performance.now() - a).toFixed(0)} ms loss ${o.loss!.data[0]!.toFixed(3)}\n`,
  );
}
console.log(
  JSON.stringify({
    createMs,
    stepMs,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    provider: s.provider,
  }),
);
