/**
 * genforce StyleGAN2 synthesis network (skip architecture) built into an engine graph.
 *
 * Modulated convolutions are written as "scale the input by the style → convolve with the CONSTANT
 * weight → scale the output by the demodulation factor" instead of genforce's per-sample fused weights.
 * The two are equal: with w[o,i,k] the (wscale-scaled) weight, s[i] the style and
 * d[o] = (Σ_{i,k} (w[o,i,k]·s[i])² + ε)^-½ = (Σ_i s[i]²·Wsq[o,i] + ε)^-½ with Wsq[o,i] = Σ_k w[o,i,k]²,
 *   Σ_{i,k} w[o,i,k]·s[i]·d[o]·x[i, p+k] = d[o] · Σ_{i,k} w[o,i,k]·(s[i]·x[i, p+k]).
 * For the upsampling layer the same holds through the (linear, per-channel) transposed conv and blur.
 * Why: onnxruntime's CPU convolutions are several times faster with constant weights, and the input
 * gradient of a constant-weight conv is again a constant-weight conv (see engine/ops/conv.ts); the
 * per-sample part shrinks to a [N, Cin] × [Cin, Cout] MatMul for d.
 *
 * ToRGB (1×1 conv, no demodulation) is a batched MatMul with the tiny modulated [3, C] weight, which
 * avoids a full-resolution input scaling in the forward and two in the backward.
 *
 * Why the √2 gain after each leaky ReLU is NOT folded into the next styles (which would save one
 * full-resolution pass per layer): at 1024 px the gradient w.r.t. wp is ill-conditioned at the ulp
 * level (a 1-ulp perturbation of wp moves it by ~7e-4 relative L2, from leaky-ReLU masks of
 * near-zero pre-activations flipping), so every rounding difference from upstream's op order shows in
 * the parity figure: folding gave 1.05e-3 relative L2 against the golden, torch's order 7.2e-4.
 */
import * as E from '../../engine/index.js';
import type { Graph, Tensor } from '../../engine/index.js';
import { DEMOD_EPS, LRELU_GAIN, LRELU_SLOPE } from './config.js';
import { StyleGAN2WeightsError, type StyleGAN2Weights } from './weights.js';

export class SynthesisInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SynthesisInputError';
  }
}

export interface SynthesisOptions {
  /** Name scope for the nodes (default "G"). */
  scope?: string;
}

/** float32(w · float32(scale)), as torch computes `param * python_float` on CPU. */
function scaled(src: Float32Array, scale: number): Float32Array {
  const s = Math.fround(scale);
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! * s;
  return out;
}

/** Wt[i, o, ky, kx] = w[o, i, kh-1-ky, kw-1-kx]: genforce's flipped, transposed kernel for conv_transpose2d. */
function transposeFlip(w: Float32Array, O: number, I: number, k: number): Float32Array {
  const out = new Float32Array(w.length);
  const kk = k * k;
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++)
      for (let t = 0; t < kk; t++) out[(i * O + o) * kk + t] = w[(o * I + i) * kk + (kk - 1 - t)]!;
  return out;
}

/** WsqT[i, o] = Σ_k w[o, i, k]² (float64 accumulation), laid out for s² [N, I] · WsqT [I, O]. */
function sqNormT(w: Float32Array, O: number, I: number, kk: number): Float32Array {
  const out = new Float32Array(I * O);
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++) {
      let acc = 0;
      const base = (o * I + i) * kk;
      for (let t = 0; t < kk; t++) acc += w[base + t]! * w[base + t]!;
      out[i * O + o] = acc;
    }
  return out;
}

/** A depthwise 4×4 kernel for `channels` channels from a stored [1, 1, 4, 4] buffer. */
function depthwise(k: Float32Array, channels: number, flip: boolean): Float32Array {
  const out = new Float32Array(channels * k.length);
  for (let c = 0; c < channels; c++)
    for (let t = 0; t < k.length; t++) out[c * k.length + t] = flip ? k[k.length - 1 - t]! : k[t]!;
  return out;
}

/**
 * Build G.synthesis(wp) into `g`. `wp` is the W+ code [N, L, w] (w = 512 for FALCO) with L = 10 (64 px),
 * 14 (256 px) or 18 (1024 px); widths come from `weights.arch` (inferred from the checkpoint); returns the image [N, 3, R, R] in genforce's range (about [-1, 1], not clamped, no tanh).
 * Every weight becomes a graph constant (pre-scaled on the host); only `wp` carries gradients.
 */
export function buildSynthesis(
  g: Graph,
  weights: StyleGAN2Weights,
  wp: Tensor,
  opts: SynthesisOptions = {},
): Tensor {
  const a = weights.arch;
  const { wDim } = a;
  if (wp.rank !== 3 || wp.shape[1] !== a.numWLayers || wp.shape[2] !== wDim)
    throw new SynthesisInputError(
      `StyleGAN2 ${a.resolution}px synthesis expects a W+ code [N, ${a.numWLayers}, ${wDim}], got ${wp}`,
    );
  const N = wp.shape[0]!;
  const W = (k: string) => weights.get(k);

  return g.scope(opts.scope ?? 'G', () => {
    const wLayer = new Map<number, Tensor>();
    const wAt = (l: number): Tensor => {
      let t = wLayer.get(l);
      if (!t) wLayer.set(l, (t = E.reshape(E.slice(wp, [l], [l + 1], [1]), [N, wDim])));
      return t;
    };
    /** Affine style of a layer: w · (Ws/√w_dim)ᵀ + b + 1 (genforce's DenseBlock with additional_bias 1). */
    const style = (prefix: string, l: number, cin: number): Tensor =>
      g.scope(`${prefix}.style`, () => {
        const ws = g.constant(
          scaled(W(`${prefix}.style.weight`), 1 / Math.sqrt(wDim)),
          [cin, wDim],
          `${prefix}.style.weight`,
        );
        const b = W(`${prefix}.style.bias`).map((v) => v + 1);
        return E.linear(wAt(l), ws, g.constant(Float32Array.from(b), [cin], `${prefix}.style.bias1`));
      });

    /** One ModulateConvBlock (3×3, demodulated, noise, bias, leaky ReLU × √2). */
    const modConv = (idx: number, x: Tensor, b: number, up: boolean): Tensor =>
      g.scope(`layer${idx}`, () => {
        const prefix = `synthesis.layer${idx}`;
        const res = a.blockResolutions[b]!;
        const cin = x.shape[1]!;
        const cout = a.channels[b]!;
        const s = style(prefix, idx, cin);
        const wscaled = scaled(W(`${prefix}.weight`), 1 / Math.sqrt(9 * cin));
        let y = E.mul(x, E.reshape(s, [N, cin, 1, 1]));
        if (up) {
          // conv_transpose2d(stride 2, pad 0) → [2H+1]; then the [1,3,3,1] blur with pad 1 → [2H].
          const wt = g.constant(
            transposeFlip(wscaled, cout, cin, 3),
            [cin, cout, 3, 3],
            `${prefix}.weight_T`,
          );
          y = E.convTranspose2d(y, wt, undefined, { stride: 2 });
          const blur = g.constant(
            depthwise(W(`${prefix}.filter.kernel`), cout, false),
            [cout, 1, 4, 4],
            `${prefix}.blur`,
          );
          y = E.conv2d(y, blur, undefined, { padding: 1, groups: cout });
        } else {
          y = E.conv2d(y, g.constant(wscaled, [cout, cin, 3, 3], `${prefix}.weight`), undefined, {
            padding: 1,
          });
        }
        // Demodulation d = (s² · Wsq + ε)^-½ per (sample, output channel).
        const wsq = g.constant(sqNormT(wscaled, cout, cin, 9), [cin, cout], `${prefix}.wsq`);
        const d = E.reciprocal(E.sqrt(E.add(E.matmul(E.mul(s, s), wsq), DEMOD_EPS)));
        y = E.mul(y, E.reshape(d, [N, cout, 1, 1]));
        const strength = W(`${prefix}.noise_strength`)[0]!;
        const noise = scaled(W(`${prefix}.noise`), strength);
        y = E.add(y, g.constant(noise, [1, 1, res, res], `${prefix}.noise_scaled`));
        y = E.add(y, g.constant(W(`${prefix}.bias`), [1, cout, 1, 1], `${prefix}.bias`));
        return E.leakyRelu(y, LRELU_SLOPE, LRELU_GAIN);
      });

    /** ToRGB: modulated 1×1 conv without demodulation, as a batched MatMul with the [N, 3, C] weight. */
    const toRgb = (b: number, x: Tensor): Tensor =>
      g.scope(`output${b}`, () => {
        const prefix = `synthesis.output${b}`;
        const [, c, h, w] = x.shape as [number, number, number, number];
        const s = style(prefix, 2 * b + 1, c);
        const wr = g.constant(scaled(W(`${prefix}.weight`), 1 / Math.sqrt(c)), [1, 3, c], `${prefix}.weight`);
        const wmod = E.mul(wr, E.reshape(s, [N, 1, c]));
        const y = E.matmul(wmod, E.reshape(x, [N, c, h * w]));
        return E.add(
          E.reshape(y, [N, 3, h, w]),
          g.constant(W(`${prefix}.bias`), [1, 3, 1, 1], `${prefix}.bias`),
        );
      });

    // The skip branch's 2× upsampling (genforce UpsamplingLayer: zero-insertion, pad (2,1), 4×4 FIR)
    // equals a per-channel transposed conv with the flipped kernel, stride 2, padding 1.
    const upK = g.constant(
      depthwise(W('synthesis.upsample.kernel'), 3, true),
      [3, 1, 4, 4],
      'synthesis.upsample.kernel_T',
    );
    const upsampleImage = (img: Tensor): Tensor =>
      E.convTranspose2d(img, upK, undefined, { stride: 2, padding: 1, groups: 3 });

    const c0 = a.channels[0]!;
    let x: Tensor = g.constant(
      W('synthesis.early_layer.const'),
      [1, c0, 4, 4],
      'synthesis.early_layer.const',
    );
    if (N > 1) x = E.expand(x, [N, c0, 4, 4]);
    let image: Tensor | undefined;
    a.blockResolutions.forEach((_res, b) => {
      if (b > 0) x = modConv(2 * b - 1, x, b, true);
      x = modConv(2 * b, x, b, false);
      const rgb = toRgb(b, x);
      image = image ? E.add(rgb, upsampleImage(image)) : rgb;
    });
    if (!image) throw new StyleGAN2WeightsError('no synthesis blocks');
    return image;
  });
}
