/**
 * Engine benchmark: a stack of 3×3 convs (+LeakyReLU) forward, and forward + input-gradient, at 256² and
 * 1024². The backward of a stride-1 constant-weight conv is a conv with flipped weights, so the
 * fwd+bwd / fwd ratio should be close to 2 (every conv runs once more).
 */
import * as E from '../../models/engine/index.js';
import { rand } from '../helpers/gradcheck.js';
import { report, timeIt } from './report.js';

async function stack(size: number, channels: number, layers: number) {
  const build = (withGrad: boolean) => {
    const g = new E.Graph(`convstack${size}`);
    const x = g.input('x', [1, channels, size, size]);
    let h = x;
    for (let i = 0; i < layers; i++) {
      const w = g.constant(rand(channels * channels * 9, i + 1, -0.05, 0.05), [channels, channels, 3, 3]);
      h = E.leakyRelu(E.conv2d(h, w, undefined, { padding: 1 }), 0.2);
    }
    const loss = E.reduceSum(h);
    g.output(loss, 'loss');
    if (withGrad) g.output(E.grad(loss, [x])[0]!, 'dx');
    return g;
  };
  const x = rand(channels * size * size, 9);
  const fwd = await E.Session.create(E.toBytes(build(false)), { provider: 'cpu' });
  const bwd = await E.Session.create(E.toBytes(build(true)), { provider: 'cpu' });
  const reps = size >= 1024 ? 2 : 3;
  const tf = await timeIt(() => fwd.run({ x }), reps);
  const tb = await timeIt(() => bwd.run({ x }), reps);
  const gflop = (2 * channels * channels * 9 * size * size * layers) / 1e9;
  const meta = { size, channels, layers };
  report('engine', `conv3x3_stack_${size}_forward`, tf, 'ms', {
    ...meta,
    gflops_per_s: +(gflop / (tf / 1000)).toFixed(1),
  });
  report('engine', `conv3x3_stack_${size}_forward_backward`, tb, 'ms', {
    ...meta,
    gflops_per_s: +((2 * gflop) / (tb / 1000)).toFixed(1),
  });
  report('engine', `conv3x3_stack_${size}_backward_over_forward`, tb / tf, 'ratio', meta);
  await fwd.release();
  await bwd.release();
}

export default async function main(): Promise<void> {
  await stack(256, 64, 4);
  await stack(1024, 32, 4);
}
