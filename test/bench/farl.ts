/**
 * FaRL ViT-B/16 at 224 px: session setup, forward (tokens), and forward + input gradient (what every
 * FALCO step pays, twice the encoder's FLOPs in the backward). Weights are the fixture pattern spec,
 * so no checkpoint is needed. `npm run bench -- farl [threads]`.
 */
import * as E from '../../models/engine/index.js';
import { buildFarl, farlTokens, loadFarlWeights } from '../../models/networks/farl.js';
import { loadSpec, pattern, requireFixturesDir } from '../../models/fixtures/index.js';
import { join } from 'node:path';
import { report, timeIt } from './report.js';

export default async function main(args: string[] = []): Promise<void> {
  const threads = args[0] ? Number(args[0]) : undefined;
  const weights = loadFarlWeights(loadSpec(join(requireFixturesDir(), 'farl_vitb16.spec.json')));
  const c = weights.config;
  const n = farlTokens(c);
  // Multiply-adds of the encoder (conv1 + per block: qkv, QKᵀ, attn·V, out_proj, MLP).
  const macs =
    3 * c.patch ** 2 * c.width * (n - 1) + c.layers * (n * c.width * c.width * 12 + 2 * n * n * c.width);
  const gflop = (2 * macs) / 1e9;

  const build = (withGrad: boolean) => {
    const g = new E.Graph('farl');
    const x = g.input('x', [1, 3, c.resolution, c.resolution]);
    const tokens = buildFarl(g, weights, x);
    g.output(tokens, 'tokens');
    if (withGrad) {
      const seed = g.constant(pattern('probe.farl', n * c.width, -1, 1), tokens.shape, 'probe');
      g.output(E.grad(tokens, [x], seed)[0]!, 'grad_input');
    }
    return g;
  };
  const x = pattern('input.farl', 3 * c.resolution ** 2, -1, 1);
  const meta = { resolution: c.resolution, threads: threads ?? 'default', gflop: +gflop.toFixed(1) };
  const opts = { provider: 'cpu' as const, ...(threads ? { threads } : {}) };

  for (const withGrad of [false, true]) {
    const name = withGrad ? 'forward_backward' : 'forward';
    let t = performance.now();
    const bytes = E.toBytes(build(withGrad));
    report('farl', `${name}_build_serialize`, performance.now() - t, 'ms', {
      ...meta,
      mbytes: Math.round(bytes.byteLength / 2 ** 20),
    });
    t = performance.now();
    const s = await E.Session.create(bytes, opts);
    report('farl', `${name}_session_create`, performance.now() - t, 'ms', meta);
    // CPU time rides along: on a shared 2-core machine wall time mostly measures the neighbours.
    const cpu0 = process.cpuUsage();
    const ms = await timeIt(() => s.run({ x }), 3, 1);
    const cpu = process.cpuUsage(cpu0);
    const cpuMsPerRun = (cpu.user + cpu.system) / 1000 / 4;
    // Input gradients only: the backward repeats each dense layer's FLOPs once (gy·W), so ≈ 2× forward.
    const flops = withGrad ? 2 * gflop : gflop;
    report('farl', `${name}_224`, ms, 'ms', {
      ...meta,
      cpu_ms_per_run: Math.round(cpuMsPerRun),
      approx_gflops_per_s: +(flops / (ms / 1000)).toFixed(1),
    });
    await s.release();
  }
}
