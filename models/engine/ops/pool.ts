/**
 * Average pooling written as a depthwise convolution with a constant kernel, so its gradient is the
 * conv VJP (no separate pooling-gradient kernel needed on any provider).
 */
import { ShapeError, type Tensor } from '../graph.js';
import { conv2d } from './conv.js';
import { mul } from './elementwise.js';

export function avgPool2d(
  x: Tensor,
  kernel: number,
  stride = kernel,
  padding = 0,
  countIncludePad = true,
): Tensor {
  const g = x.graph;
  const [, C, H, W] = x.shape as [number, number, number, number];
  if (x.rank !== 4) throw new ShapeError(`avgPool2d: expects NCHW, got ${x}`);
  const ones = new Float32Array(C * kernel * kernel).fill(1);
  const summed = conv2d(x, g.constant(ones, [C, 1, kernel, kernel]), undefined, {
    stride,
    padding,
    groups: C,
  });
  if (countIncludePad || padding === 0) return mul(summed, 1 / (kernel * kernel));
  // Divide each output by the number of real (unpadded) inputs under its window, like PyTorch.
  const [, , Ho, Wo] = summed.shape as number[];
  const count = new Float32Array(Ho! * Wo!);
  const span = (o: number, n: number) =>
    Math.min(o * stride - padding + kernel, n) - Math.max(o * stride - padding, 0);
  for (let i = 0; i < Ho!; i++)
    for (let j = 0; j < Wo!; j++) count[i * Wo! + j] = 1 / (span(i, H) * span(j, W));
  return mul(summed, g.constant(count, [1, 1, Ho!, Wo!]));
}
