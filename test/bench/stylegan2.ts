/**
 * StyleGAN2 (genforce layout) generator on the engine, CPU: forward and forward + d(Σ image·R)/d wp at
 * 64, 256 and 1024 px (`npm run bench -- stylegan2 [resolutions...]`). Weights are synthetic (pattern
 * formula over the real key names/shapes): speed does not depend on the values.
 * Figures: session build (graph → ONNX bytes → onnxruntime session), median run times, peak RSS.
 * The `_noarena` figures run the same fwd+bwd model on a raw onnxruntime session with the CPU memory
 * arena off: with the arena (engine Session default) RSS doubles on the second run (the arena keeps the
 * first run's blocks and the memory-pattern block), which matters for the 8 GB budget at 1024 px.
 */
import ort from 'onnxruntime-node';
import * as E from '../../models/engine/index.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import { pattern } from '../../models/fixtures/pattern.js';
import {
  arch,
  buildGeneratorGraph,
  expectedKeys,
  loadStyleGAN2Weights,
} from '../../models/networks/stylegan2/index.js';
import { report, timeIt } from './report.js';

const BLUR = (() => {
  const k = [1, 3, 3, 1];
  const out = new Float32Array(16);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) out[i * 4 + j] = (k[i]! * k[j]!) / 16;
  return out;
})();

function syntheticWeights(res: number): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [k, shape] of expectedKeys(res)) {
    let data: Float32Array;
    if (k.endsWith('.kernel')) data = BLUR.slice();
    else if (k.endsWith('style.bias')) data = pattern(k, shape, 0.9, 1.1);
    else if (k.endsWith('noise_strength')) data = Float32Array.of(0.1);
    else if (k.endsWith('.bias') || k.endsWith('w_avg')) data = pattern(k, shape, -0.1, 0.1);
    else data = pattern(k, shape, -Math.sqrt(3), Math.sqrt(3));
    m.set(k, makeTensor('float32', shape, data));
  }
  return m;
}

const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

async function bench(res: number): Promise<void> {
  const w = loadStyleGAN2Weights(syntheticWeights(res), res);
  const L = arch(res).numWLayers;
  const wp = pattern('bench.wp', [1, L, 512], -1, 1);
  const probe = pattern('bench.probe', [1, 3, res, res], -1, 1);
  const reps = res >= 1024 ? 3 : 5;
  const meta = { resolution: res };

  let t = performance.now();
  const fwd = await E.Session.create(E.toBytes(buildGeneratorGraph(w)), { provider: 'cpu' });
  report('stylegan2', `g${res}_forward_session_build`, performance.now() - t, 'ms', meta);
  const tf = await timeIt(() => fwd.run({ wp }), reps);
  report('stylegan2', `g${res}_forward`, tf, 'ms', meta);
  await fwd.release();

  t = performance.now();
  const both = await E.Session.create(E.toBytes(buildGeneratorGraph(w, { withProbeGrad: true })), {
    provider: 'cpu',
  });
  report('stylegan2', `g${res}_forward_backward_session_build`, performance.now() - t, 'ms', meta);
  const tb = await timeIt(() => both.run({ wp, probe }), reps);
  report('stylegan2', `g${res}_forward_backward`, tb, 'ms', meta);
  report('stylegan2', `g${res}_backward_over_forward`, tb / tf, 'ratio', meta);
  await both.release();
  report('stylegan2', `peak_rss_after_g${res}`, peakRssMb(), 'MiB', meta);

  const raw = await ort.InferenceSession.create(E.toBytes(buildGeneratorGraph(w, { withProbeGrad: true })), {
    graphOptimizationLevel: 'all',
    enableCpuMemArena: false,
    logSeverityLevel: 3,
  });
  const feeds = {
    wp: new ort.Tensor('float32', wp, [1, L, 512]),
    probe: new ort.Tensor('float32', probe, [1, 3, res, res]),
  };
  const rssBefore = process.memoryUsage().rss;
  const tn = await timeIt(() => raw.run(feeds), reps);
  report('stylegan2', `g${res}_forward_backward_noarena`, tn, 'ms', {
    ...meta,
    rss_after_runs_mib: Math.round((process.memoryUsage().rss - rssBefore) / 2 ** 20),
  });
  await raw.release();
}

export default async function main(args: string[]): Promise<void> {
  const list = args.length ? args.map(Number) : [64, 256, 1024];
  for (const r of list) await bench(r);
}
