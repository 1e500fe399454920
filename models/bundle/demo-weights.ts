/**
 * Pattern-weight checkpoints in the official file formats and key layouts, at any size.
 *
 * The golden fixtures (test/fixtures/falco/*.spec.json) define the real networks' weights as
 * `pattern(key, shape, lo, hi)` with a fixed range rule per kind of tensor. This module reproduces
 * those layouts *from a size description* — with FULL_SIZES it yields exactly the fixture specs (a
 * test checks key, shape, lo, hi and fixed values one by one) — so that DEMO_SIZES gives the same
 * architectures, same key names and same range rules, only narrower / shallower, and a 50-step face
 * costs seconds on a laptop CPU. Demo weights are untrained: the output is not photorealistic.
 *
 * Range rules (read off the fixture specs): conv / linear weights ±√(3/fan_in) (unit-variance
 * activations), BatchNorm γ and PReLU slopes [0.8, 1.2], biases and running means ±0.1, running
 * variances [0.5, 1.5]; the StyleGAN2 weights are stored unscaled (±√3, equalized learning rate is
 * applied at run time), style biases [0.9, 1.1], noise strengths [0.05, 0.15], w_avg and latent_avg
 * ±0.5, blur kernels the fixed [1,3,3,1]⊗[1,3,3,1]/16.
 *
 * Files (see writeDemoCheckpoints): `stylegan2_ffhq1024.pth` = {generator_smooth: state}, `e4e_ffhq_encode.pt`
 * = {state_dict: {encoder.*}, latent_avg, opts: {stylegan_size}}, `model_ir_se50.pth` = state dict,
 * `FaRL-Base-Patch16-LAIONFace20M-ep64.pth` = {state_dict: {visual.*}}. The file names are the official
 * ones so `models build --falco <dir>` reads a demo directory exactly as it reads the real one.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PyOrderedDict } from '../checkpoint/pickle.js';
import { makeTensor, type Tensor } from '../checkpoint/tensor.js';
import { saveCheckpoint, type SaveValue } from '../checkpoint/write.js';
import type { SpecEntry } from '../fixtures/spec.js';
import { specTensor } from '../fixtures/spec.js';
import { OFFICIAL_FILES, type OfficialPaths } from './build.js';

/** One IR-SE stage: (input channels, depth, units); the first unit of a stage has stride 2. */
export type IrseStage = [inC: number, depth: number, units: number];

export interface NetworkSizes {
  generator: {
    resolution: number;
    /** genforce fmaps_base / fmaps_max: channels at resolution r = min(base / r, max). */
    fmapsBase: number;
    fmapsMax: number;
  };
  /** IR-SE body shared by ArcFace and e4e (input layer width = stages[0][0]). */
  irse: { stages: IrseStage[]; seReduction: number };
  /**
   * Width of e4e's style-block convs (512 in the real network). Their final EqualLinear maps it to the
   * 512-D W space: [512, styleWidth].
   */
  e4e: { styleWidth: number };
  farl: { resolution: number; patch: number; width: number; layers: number; outputDim: number };
}

/** The real networks (FALCO: 1024 px generator, IR-SE50, ViT-B/16). */
export const FULL_SIZES: NetworkSizes = {
  generator: { resolution: 1024, fmapsBase: 32 << 10, fmapsMax: 512 },
  irse: {
    stages: [
      [64, 64, 3],
      [64, 128, 4],
      [128, 256, 14],
      [256, 512, 3],
    ],
    seReduction: 16,
  },
  e4e: { styleWidth: 512 },
  farl: { resolution: 224, patch: 16, width: 768, layers: 12, outputDim: 512 },
};

/**
 * The demo bundle: 64 px generator with 64 channels, a 4-unit IR-SE with 16..128 channels, a 2-layer
 * 64-wide ViT (still 197 tokens). Change these numbers to trade speed for capacity; nothing else in the
 * code depends on them.
 */
export const DEMO_SIZES: NetworkSizes = {
  generator: { resolution: 64, fmapsBase: 64 * 64, fmapsMax: 64 },
  irse: {
    stages: [
      [16, 16, 1],
      [16, 32, 1],
      [32, 64, 1],
      [64, 128, 1],
    ],
    seReduction: 16,
  },
  // The real style blocks are 512 wide (the W dimension); 64 keeps the demo e4e at ~3 MB instead of 400 MB.
  e4e: { styleWidth: 64 },
  farl: { resolution: 224, patch: 16, width: 64, layers: 2, outputDim: 512 },
};

const W_DIM = 512;
const SQRT3 = Math.sqrt(3);
// [1,3,3,1]⊗[1,3,3,1] normalised to sum 1, times up² = 4 (genforce scales the FIR kernel of 2× layers by the gain).
const BLUR = [1, 3, 3, 1].flatMap((a) => [1, 3, 3, 1].map((b) => (a * b) / 16));

const uni = (key: string, shape: number[], bound: number): SpecEntry => ({
  key,
  shape,
  lo: -bound,
  hi: bound,
});
const fan = (key: string, shape: number[]): SpecEntry =>
  uni(key, shape, Math.sqrt(3 / shape.slice(1).reduce((a, b) => a * b, 1)));
const range = (key: string, shape: number[], lo: number, hi: number): SpecEntry => ({ key, shape, lo, hi });
const bias = (key: string, n: number): SpecEntry => range(key, [n], -0.1, 0.1);
function bn(out: SpecEntry[], p: string, c: number): void {
  out.push(
    range(`${p}.weight`, [c], 0.8, 1.2),
    bias(`${p}.bias`, c),
    range(`${p}.running_mean`, [c], -0.1, 0.1),
    range(`${p}.running_var`, [c], 0.5, 1.5),
  );
}

// ------------------------------------------------------------------------------------ generator

export function generatorChannels(s: NetworkSizes['generator'], res: number): number {
  return Math.min(Math.floor(s.fmapsBase / res), s.fmapsMax);
}

/** genforce StyleGAN2Generator state dict (the dict stored under `generator_smooth`). */
export function generatorLayout(sz: NetworkSizes): SpecEntry[] {
  const s = sz.generator;
  const log2 = Math.log2(s.resolution);
  if (!Number.isInteger(log2) || log2 < 3)
    throw new RangeError(`generator resolution must be a power of two ≥ 8, got ${s.resolution}`);
  const ch = (r: number) => generatorChannels(s, r);
  const out: SpecEntry[] = [];
  for (let i = 0; i < 8; i++)
    out.push(uni(`mapping.dense${i}.weight`, [W_DIM, W_DIM], SQRT3), bias(`mapping.dense${i}.bias`, W_DIM));
  out.push(
    uni('truncation.w_avg', [W_DIM], 0.5),
    uni('synthesis.early_layer.const', [1, ch(4), 4, 4], SQRT3),
  );
  const layer = (idx: number, cin: number, cout: number, res: number, up: boolean) => {
    const p = `synthesis.layer${idx}`;
    out.push(
      uni(`${p}.weight`, [cout, cin, 3, 3], SQRT3),
      bias(`${p}.bias`, cout),
      range(`${p}.noise_strength`, [], 0.05, 0.15),
      uni(`${p}.noise`, [1, 1, res, res], SQRT3),
    );
    if (up) out.push({ key: `${p}.filter.kernel`, shape: [1, 1, 4, 4], values: BLUR });
    out.push(uni(`${p}.style.weight`, [cin, W_DIM], SQRT3), range(`${p}.style.bias`, [cin], 0.9, 1.1));
  };
  for (let b = 0, res = 4; res <= s.resolution; b++, res *= 2) {
    if (b > 0) layer(2 * b - 1, ch(res / 2), ch(res), res, true);
    layer(2 * b, ch(res), ch(res), res, false);
    const p = `synthesis.output${b}`;
    out.push(
      uni(`${p}.weight`, [3, ch(res), 1, 1], SQRT3),
      bias(`${p}.bias`, 3),
      uni(`${p}.style.weight`, [ch(res), W_DIM], SQRT3),
      range(`${p}.style.bias`, [ch(res)], 0.9, 1.1),
    );
  }
  out.push({ key: 'synthesis.upsample.kernel', shape: [1, 1, 4, 4], values: BLUR });
  return out;
}

// ------------------------------------------------------------------------------------ IR-SE

interface Unit {
  inC: number;
  depth: number;
}
const unitsOf = (s: NetworkSizes['irse']): Unit[] =>
  s.stages.flatMap(([inC, depth, n]) => [
    { inC, depth },
    ...Array.from({ length: n - 1 }, () => ({ inC: depth, depth })),
  ]);

function irseBody(out: SpecEntry[], s: NetworkSizes['irse'], prefix: string): void {
  const c0 = s.stages[0]![0];
  out.push(fan(`${prefix}input_layer.0.weight`, [c0, 3, 3, 3]));
  bn(out, `${prefix}input_layer.1`, c0);
  out.push(range(`${prefix}input_layer.2.weight`, [c0], 0.8, 1.2));
  unitsOf(s).forEach((u, i) => {
    const p = `${prefix}body.${i}`;
    if (u.inC !== u.depth) {
      out.push(fan(`${p}.shortcut_layer.0.weight`, [u.depth, u.inC, 1, 1]));
      bn(out, `${p}.shortcut_layer.1`, u.depth);
    }
    bn(out, `${p}.res_layer.0`, u.inC);
    out.push(
      fan(`${p}.res_layer.1.weight`, [u.depth, u.inC, 3, 3]),
      range(`${p}.res_layer.2.weight`, [u.depth], 0.8, 1.2),
      fan(`${p}.res_layer.3.weight`, [u.depth, u.depth, 3, 3]),
    );
    bn(out, `${p}.res_layer.4`, u.depth);
    const r = Math.max(1, Math.floor(u.depth / s.seReduction));
    out.push(
      fan(`${p}.res_layer.5.fc1.weight`, [r, u.depth, 1, 1]),
      fan(`${p}.res_layer.5.fc2.weight`, [u.depth, r, 1, 1]),
    );
  });
}

/** `model_ir_se50.pth`: Backbone(112, 'ir_se') — body, BN2d, Linear(C·7·7 → 512), BN1d. */
export function arcfaceLayout(sz: NetworkSizes): SpecEntry[] {
  const out: SpecEntry[] = [];
  irseBody(out, sz.irse, '');
  const c = sz.irse.stages.at(-1)![1];
  bn(out, 'output_layer.0', c);
  out.push(fan('output_layer.3.weight', [W_DIM, c * 7 * 7]), bias('output_layer.3.bias', W_DIM));
  bn(out, 'output_layer.4', W_DIM);
  return out;
}

/** Style blocks read c3 (blocks 0–2), p2 (3–6), p1 (7–); their conv count takes 16/32/64 px down to 1. */
const e4eConvs = (i: number): number => (i < 3 ? 4 : i < 7 ? 5 : 6);

/** `e4e_ffhq_encode.pt`: `encoder.*` of Encoder4Editing + `latent_avg` [L, 512], for a generator with L W+ layers. */
export function e4eLayout(sz: NetworkSizes): SpecEntry[] {
  const L = 2 * Math.log2(sz.generator.resolution) - 2;
  const out: SpecEntry[] = [];
  irseBody(out, sz.irse, 'encoder.');
  const st = sz.irse.stages;
  if (st.length !== 4)
    throw new RangeError(`e4e taps three IR-SE stages after the first: expected 4 stages, got ${st.length}`);
  const [c1, c2, c3] = [st[1]![1], st[2]![1], st[3]![1]];
  const w = sz.e4e.styleWidth;
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < e4eConvs(i); j++) {
      // The first conv reads the feature map (c3 channels, = FPN width), the others the block's own width.
      const cin = j === 0 ? c3 : w;
      out.push(
        fan(`encoder.styles.${i}.convs.${2 * j}.weight`, [w, cin, 3, 3]),
        bias(`encoder.styles.${i}.convs.${2 * j}.bias`, w),
      );
    }
    out.push(
      fan(`encoder.styles.${i}.linear.weight`, [W_DIM, w]),
      bias(`encoder.styles.${i}.linear.bias`, W_DIM),
    );
  }
  out.push(fan('encoder.latlayer1.weight', [c3, c2, 1, 1]), bias('encoder.latlayer1.bias', c3));
  out.push(fan('encoder.latlayer2.weight', [c3, c1, 1, 1]), bias('encoder.latlayer2.bias', c3));
  out.push(uni('latent_avg', [L, W_DIM], 0.5));
  return out;
}

/** FaRL checkpoint `state_dict` `visual.*` keys (CLIP VisionTransformer). */
export function farlLayout(sz: NetworkSizes): SpecEntry[] {
  const f = sz.farl;
  const w = f.width;
  const tokens = (f.resolution / f.patch) ** 2 + 1;
  const v = 'visual.';
  const out: SpecEntry[] = [
    uni(`${v}class_embedding`, [w], 0.5),
    uni(`${v}positional_embedding`, [tokens, w], Math.sqrt(3 / w)),
    uni(`${v}proj`, [w, f.outputDim], Math.sqrt(3 / f.outputDim)),
    fan(`${v}conv1.weight`, [w, 3, f.patch, f.patch]),
    range(`${v}ln_pre.weight`, [w], 0.8, 1.2),
    bias(`${v}ln_pre.bias`, w),
  ];
  for (let i = 0; i < f.layers; i++) {
    const p = `${v}transformer.resblocks.${i}.`;
    out.push(
      fan(`${p}attn.in_proj_weight`, [3 * w, w]),
      bias(`${p}attn.in_proj_bias`, 3 * w),
      fan(`${p}attn.out_proj.weight`, [w, w]),
      bias(`${p}attn.out_proj.bias`, w),
      range(`${p}ln_1.weight`, [w], 0.8, 1.2),
      bias(`${p}ln_1.bias`, w),
      fan(`${p}mlp.c_fc.weight`, [4 * w, w]),
      bias(`${p}mlp.c_fc.bias`, 4 * w),
      fan(`${p}mlp.c_proj.weight`, [w, 4 * w]),
      bias(`${p}mlp.c_proj.bias`, w),
      range(`${p}ln_2.weight`, [w], 0.8, 1.2),
      bias(`${p}ln_2.bias`, w),
    );
  }
  out.push(range(`${v}ln_post.weight`, [w], 0.8, 1.2), bias(`${v}ln_post.bias`, w));
  return out;
}

function stateOf(entries: SpecEntry[], filter: (k: string) => boolean = () => true): PyOrderedDict {
  const d = new PyOrderedDict();
  for (const e of entries) if (filter(e.key)) d.set(e.key, specTensor(e) as Tensor as never);
  return d;
}

/**
 * Write the four checkpoints (official names and layouts) into `dir`. Deterministic: the same sizes
 * give byte-identical files.
 */
export async function writeDemoCheckpoints(
  dir: string,
  sizes: NetworkSizes = DEMO_SIZES,
): Promise<OfficialPaths> {
  await mkdir(dir, { recursive: true });
  const paths = Object.fromEntries(
    Object.entries(OFFICIAL_FILES).map(([k, f]) => [k, join(dir, f)]),
  ) as OfficialPaths;
  await saveCheckpoint(paths.stylegan2, {
    generator_smooth: stateOf(generatorLayout(sizes)) as unknown as SaveValue,
  });
  const e4e = e4eLayout(sizes);
  const avg = e4e.find((e) => e.key === 'latent_avg')!;
  await saveCheckpoint(paths.e4e, {
    state_dict: stateOf(e4e, (k) => k !== 'latent_avg') as unknown as SaveValue,
    latent_avg: specTensor(avg),
    opts: { stylegan_size: sizes.generator.resolution, encoder_type: 'Encoder4Editing' },
  });
  await saveCheckpoint(paths.arcface, stateOf(arcfaceLayout(sizes)) as unknown as SaveValue);
  await saveCheckpoint(paths.farl, { state_dict: stateOf(farlLayout(sizes)) as unknown as SaveValue });
  return paths;
}

/** A float32 tensor of the layout entry `key` (for tests). */
export function layoutTensor(entries: SpecEntry[], key: string): Tensor {
  const e = entries.find((x) => x.key === key);
  if (!e) throw new RangeError(`no ${key} in layout`);
  return makeTensor('float32', e.shape, specTensor(e).data as Float32Array);
}
