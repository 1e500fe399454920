/**
 * The five ONNX models of a FALCO bundle (see contract.ts), built from validated network weights.
 *
 * The step model is the heart of the product: one session.run computes G(w) → ArcFace and FaRL →
 * loss → backward → Adam update. The trainable layer range is a *mask input* rather than a structural
 * slice, so a per-call range needs no new model: rows with mask 0 receive a zero gradient, and Adam
 * leaves a parameter with zero gradient and zero moments exactly where it is.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as E from '../engine/index.js';
import { type PyValue, loadCheckpoint, stateDict } from '../checkpoint/index.js';
import { type ArcFaceWeights, buildArcFace, loadArcFaceWeights } from '../networks/arcface.js';
import {
  type E4EWeights,
  buildE4E,
  e4eWeightsFromCheckpoint,
  loadE4EWeights,
  E4E_INPUT,
} from '../networks/e4e.js';
import {
  type FarlWeights,
  buildFarl,
  farlCheckpointSelect,
  farlTokens,
  loadFarlWeights,
} from '../networks/farl.js';
import { farl224, id112 } from '../networks/preprocess.js';
import {
  FALCO_TRUNCATION_LAYERS,
  type StyleGAN2Weights,
  W_DIM,
  Z_DIM,
  arch,
  buildMapping,
  buildSynthesis,
  loadStyleGAN2Weights,
} from '../networks/stylegan2/index.js';
import type { WeightMap } from '../networks/irse50/index.js';
import { ADAM, IO, MODEL_FILES, stepBatchFile, type ModelName } from './contract.js';

export interface FalcoWeights {
  generator: StyleGAN2Weights;
  arcface: ArcFaceWeights;
  farl: FarlWeights;
  e4e: E4EWeights;
}

/** What the step and targets models need (no encoder). */
export type StepWeights = Pick<FalcoWeights, 'generator' | 'arcface' | 'farl'>;

export class FalcoWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FalcoWeightsError';
  }
}

/** Validate four name → tensor maps (real checkpoints or pattern specs) into FalcoWeights. */
export function falcoWeightsFromMaps(m: {
  generator: WeightMap;
  arcface: WeightMap;
  farl: WeightMap;
  e4e: WeightMap;
}): FalcoWeights {
  const errors: string[] = [];
  let step: StepWeights | undefined;
  try {
    step = falcoWeightsFromStepMaps(m);
  } catch (e) {
    errors.push((e as Error).message);
  }
  let e4e: E4EWeights | undefined;
  try {
    e4e = loadE4EWeights(m.e4e, step ? { expectStyles: arch(step.generator.resolution).numWLayers } : {});
    // The encoder's codes are fed to the generator: their widths must agree.
    if (e4e.arch.wDim !== W_DIM)
      errors.push(`e4e: its W+ codes are ${e4e.arch.wDim}-D but the generator takes ${W_DIM}-D codes`);
  } catch (e) {
    errors.push(`e4e: ${(e as Error).message}`);
  }
  if (errors.length || !step || !e4e) throw new FalcoWeightsError(errors.join('\n'));
  return { ...step, e4e };
}

/** Validate the three networks of the step (fixtures' falco_step cases carry no encoder). */
export function falcoWeightsFromStepMaps(m: {
  generator: WeightMap;
  arcface: WeightMap;
  farl: WeightMap;
}): StepWeights {
  const errors: string[] = [];
  const attempt = <T>(name: string, f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
      return undefined;
    }
  };
  const generator = attempt('stylegan2', () => loadStyleGAN2Weights(m.generator as never));
  const arcface = attempt('arcface', () => loadArcFaceWeights(m.arcface));
  const farl = attempt('farl', () => loadFarlWeights(m.farl as never));
  if (errors.length || !generator || !arcface || !farl) throw new FalcoWeightsError(errors.join('\n'));
  return { generator, arcface, farl };
}

export interface OfficialCheckpoints {
  /** genforce stylegan2_ffhq1024.pth (generator under `generator_smooth`). */
  stylegan2: string;
  /** e4e_ffhq_encode.pt (`state_dict` with `encoder.*`, top-level `latent_avg`). */
  e4e: string;
  /** model_ir_se50.pth (plain state dict). */
  arcface: string;
  /** FaRL-Base-Patch16-LAIONFace20M-ep64.pth (`state_dict` with CLIP keys; only `visual.*` is read). */
  farl: string;
}

/**
 * Load and validate the four official checkpoints. Only the tensors we use are read from disk (the
 * discriminator, e4e's decoder and FaRL's text tower are skipped). Every problem of every file is
 * reported at once.
 */
export async function loadOfficialWeights(p: OfficialCheckpoints): Promise<FalcoWeights> {
  const read = async (name: string, path: string, select?: (k: string) => boolean): Promise<PyValue> => {
    try {
      // Training checkpoints carry more than weights (optimizer state, run options with arbitrary Python
      // objects): we only need tensors, so unknown classes load as opaque values instead of failing.
      return await loadCheckpoint(path, { unknownClasses: 'opaque', ...(select ? { select } : {}) });
    } catch (e) {
      throw new FalcoWeightsError(`${name} (${path}): ${(e as Error).message}`);
    }
  };
  const [g, a, f, e] = await Promise.all([
    // Read only the storages we use: genforce's generator (smoothed, or plain as FALCO's fallback), the
    // e4e encoder + latent_avg, FaRL's visual tower.
    read('stylegan2', p.stylegan2, (k) => /^generator(_smooth)?\./.test(k)),
    read('arcface', p.arcface),
    read('farl', p.farl, farlCheckpointSelect),
    read('e4e', p.e4e, (k) => /^(state_dict\.encoder\.|latent_avg)/.test(k)),
  ]);
  const farlMap = stateDict(f, 'state_dict.');
  const errors: string[] = [];
  let e4e: E4EWeights | undefined;
  try {
    e4e = e4eWeightsFromCheckpoint(e);
  } catch (err) {
    errors.push(`e4e: ${(err as Error).message}`);
  }
  let rest: FalcoWeights | undefined;
  try {
    rest = falcoWeightsFromMaps({
      generator: stateDict(g),
      arcface: stateDict(a),
      farl: farlMap.size ? farlMap : stateDict(f),
      e4e: e4e ? e4e.map : new Map(),
    });
  } catch (err) {
    errors.push((err as Error).message);
  }
  if (errors.length || !rest) throw new FalcoWeightsError(errors.filter(Boolean).join('\n'));
  return rest;
}

// ------------------------------------------------------------------------------------------ graphs

const L = (w: StepWeights) => arch(w.generator.resolution).numWLayers;
const N = (w: StepWeights) => w.generator.resolution;

/** CLIP's input normalisation (applied by FALCO's feature extraction for nearest-neighbour search). */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** FaRL image embedding: ln_post(cls token) · proj, L2-normalised (cosine NN search downstream). */
function farlEmbedding(g: E.Graph, w: FarlWeights, x224: E.Tensor): E.Tensor {
  const B = x224.shape[0]!;
  const t = (k: string) => {
    const v = w.tensors.get(k);
    if (!v)
      throw new FalcoWeightsError(`farl: the image embedding needs visual.${k} (absent from the checkpoint)`);
    return v;
  };
  const mean = g.constant(Float32Array.from(CLIP_MEAN), [1, 3, 1, 1]);
  const std = g.constant(Float32Array.from(CLIP_STD), [1, 3, 1, 1]);
  const tokens = buildFarl(g, w, E.div(E.sub(x224, mean), std));
  const cls = E.reshape(E.slice(tokens, [0], [1], [1]), [B, tokens.shape[2]!]);
  const lnw = t('ln_post.weight');
  const lnb = t('ln_post.bias');
  const proj = t('proj');
  const normed = E.layerNorm(cls, g.constant(lnw.data, lnw.shape), g.constant(lnb.data, lnb.shape));
  const emb = E.matmul(normed, g.constant(proj.data, proj.shape));
  return E.div(emb, E.sqrt(E.reduceSum(E.mul(emb, emb), [1], true)));
}

/**
 * targets.onnx: B original aligned faces → id [B,512], tokens [B,T,768], farl [B,512]. The image is
 * at the generator resolution by default; FALCO's preprocessing accepts any size (the fixtures use 256).
 */
export function buildTargetsGraph(w: StepWeights, imageSize = N(w), batch = 1): E.Graph {
  const g = new E.Graph('falco_targets');
  const x = g.input('image', [batch, 3, imageSize, imageSize]);
  const x224 = farl224(x);
  g.output(buildArcFace(g, w.arcface, id112(x)), 'id');
  g.output(buildFarl(g, w.farl, x224), 'tokens');
  g.output(farlEmbedding(g, w.farl, x224), 'farl');
  return g;
}

export interface StepGraphOptions {
  /** Also output the rendered image (for previews/debugging; costs a transfer per step). */
  withImage?: boolean;
  /** Also output `grad` = dloss/dt (masked), for parity checks. */
  withGrad?: boolean;
  /** Faces optimised together (each with its own code, targets, mask, settings and Adam state). */
  batch?: number;
  /**
   * W+ rows [start, end) that may ever be trainable (the bundle's `trainableRange`); default all rows.
   * Rows outside never reach the backward: no style gradients for them, and the feature-map gradient
   * stops at the first row that can train (layer 3 of 18 for FALCO's [3, 8)). The `mask` input still
   * chooses the rows per call inside this range; a mask row outside it is ignored (the row is `real`).
   */
  gradRows?: [number, number];
}

/** step.onnx: see contract.ts for the inputs and outputs. */
export function buildStepGraph(w: StepWeights, opts: StepGraphOptions = {}): E.Graph {
  const g = new E.Graph('falco_step');
  const l = L(w);
  const T = farlTokens(w.farl.config);
  const D = w.farl.config.width;
  const B = opts.batch ?? 1;
  const [lo, hi] = opts.gradRows ?? [0, l];
  if (!Number.isInteger(B) || B < 1)
    throw new FalcoWeightsError(`step batch must be an integer ≥ 1, got ${B}`);
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && lo < hi && hi <= l))
    throw new FalcoWeightsError(`step gradRows [${lo}, ${hi}) is not a range inside [0, ${l})`);
  const code = [B, l, W_DIM];
  const t = g.input('t', code);
  const real = g.input('real', code);
  const mask = g.input('mask', [B, l, 1]);
  const m = g.input('m', code);
  const v = g.input('v', code);
  // Per-face scalars are [B] vectors (shape [1] at batch 1, which takes the same one-value feed).
  const perFace = (name: string) => g.input(name, [B]);
  const lr = perFace('lr');
  const bc1 = perFace('bc1');
  const bc2 = perFace('bc2');
  const targetId = g.input('target_id', [B, w.arcface.arch.embedding]);
  const targetTokens = g.input('target_tokens', [B, T, D]);
  const margin = perFace('margin');
  const lambdaId = perFace('lambda_id');
  const lambdaAttr = perFace('lambda_attr');
  const col = (x: E.Tensor) => E.reshape(x, [B, 1, 1]);

  // w = real outside the trainable rows, t inside (FALCO's concat(real[:, :a], t, real[:, b:])). Written as
  // real·(1−mask) + t·mask, which is exact for a 0/1 mask (real + mask·(t − real) would round t). Only
  // rows [lo, hi) see t at all, so the tape (and the backward) never reaches the others.
  const rowsOf = (x: E.Tensor, a: number, b: number) => E.slice(x, [a], [b], [1]);
  const mk = rowsOf(mask, lo, hi);
  const mixed = E.add(E.mul(rowsOf(real, lo, hi), E.sub(1, mk)), E.mul(rowsOf(t, lo, hi), mk));
  const parts = [...(lo > 0 ? [rowsOf(real, 0, lo)] : []), mixed, ...(hi < l ? [rowsOf(real, hi, l)] : [])];
  const wp = E.concat(parts, 1);
  const image = buildSynthesis(g, w.generator, wp); // scoped 'G' inside
  const id = g.scope('arcface', () => buildArcFace(g, w.arcface, id112(image))); // [B, 512]
  const tokens = g.scope('farl', () => buildFarl(g, w.farl, farl224(image))); // [B, T, D]
  // Per-face losses [B]; their sum is what is differentiated, so each face gets its own gradient. The
  // attribute loss is FALCO's Σ over the 197 tokens of nn.L1Loss (mean over the 768 features) = Σ|Δ| / 768.
  const idLoss = E.abs(E.sub(E.reduceSum(E.mul(id, targetId), [1]), margin));
  const attr = E.mul(E.reduceSum(E.abs(E.sub(tokens, targetTokens)), [1, 2]), 1 / D);
  const loss = E.add(E.mul(lambdaId, idLoss), E.mul(lambdaAttr, attr));
  const [gt] = E.grad(B === 1 ? E.reshape(loss, []) : E.reduceSum(loss), [t]);
  const next = E.adamStep(t, gt!, m, v, col(lr), col(bc1), col(bc2), { betas: ADAM.betas, eps: ADAM.eps });
  g.output(next.p, 't_next');
  g.output(next.m, 'm_next');
  g.output(next.v, 'v_next');
  g.output(loss, 'loss');
  g.output(idLoss, 'id_loss');
  g.output(attr, 'attr_loss');
  if (opts.withImage) g.output(image, 'image');
  if (opts.withGrad) g.output(gt!, 'grad');
  return g;
}

/** render.onnx: wp [B,L,512] → image [B,3,N,N]. */
export function buildRenderGraph(w: Pick<FalcoWeights, 'generator'>, batch = 1): E.Graph {
  const g = new E.Graph('falco_render');
  const wp = g.input('wp', [batch, arch(w.generator.resolution).numWLayers, W_DIM]);
  g.output(buildSynthesis(g, w.generator, wp), 'image');
  return g;
}

/** encoder.onnx: image [B,3,256,256] → wplus [B,L,512] (e4e codes + latent_avg). */
export function buildEncoderGraph(w: FalcoWeights, batch = 1): E.Graph {
  const g = new E.Graph('falco_encoder');
  const x = g.input('image', [batch, 3, E4E_INPUT, E4E_INPUT]);
  g.output(buildE4E(g, w.e4e, x).wplus, 'wplus');
  return g;
}

/**
 * mapping.onnx: z [1,512], ψ [] → wp [1,L,512]: w = mapping(z), truncated towards `truncation.w_avg`
 * on the first 18 layers (genforce get_w default, i.e. all of them up to 1024 px). ψ is an input so the
 * pool builder can choose it without rebuilding.
 */
export function buildMappingGraph(w: FalcoWeights): E.Graph {
  const g = new E.Graph('falco_mapping');
  const z = g.input('z', [1, Z_DIM]);
  const psi = g.input('psi', []);
  const l = L(w);
  const wv = E.expand(E.reshape(buildMapping(g, w.generator, z), [1, 1, W_DIM]), [1, l, W_DIM]);
  const avg = g.constant(w.generator.get('truncation.w_avg'), [1, 1, W_DIM], 'truncation.w_avg');
  const rows = new Float32Array(l).map((_, i) => (i < FALCO_TRUNCATION_LAYERS ? 1 : 0));
  const which = g.constant(rows, [1, l, 1]);
  // coef = 1 + which·(ψ − 1): ψ on truncated rows, 1 elsewhere.
  const coef = E.add(1, E.mul(which, E.sub(psi, 1)));
  g.output(E.add(avg, E.mul(E.sub(wv, avg), coef)), 'wp');
  return g;
}

export interface FalcoModelOptions {
  /** Trainable W+ rows [start, end) of the bundle (its manifest `trainableRange`): the step's gradRows. */
  trainable?: [number, number];
  /** Also write step models for these batch sizes (step_b{B}.onnx, for FalcoEngine.optimizeBatch). */
  stepBatches?: number[];
}

export const GRAPH_BUILDERS: Record<ModelName, (w: FalcoWeights, o?: FalcoModelOptions) => E.Graph> = {
  encoder: (w) => buildEncoderGraph(w),
  targets: (w) => buildTargetsGraph(w),
  step: (w, o) => buildStepGraph(w, o?.trainable ? { gradRows: o.trainable } : {}),
  render: (w) => buildRenderGraph(w),
  mapping: buildMappingGraph,
};

export interface WrittenModel {
  file: string;
  modelBytes: number;
  dataBytes: number;
  buildMs: number;
}

/**
 * Build and save every model of the bundle into `outDir` (`<name>.onnx` + `<name>.onnx.data`). Graphs
 * are built one at a time so peak memory stays at one model's worth of host-side constants.
 */
export async function writeFalcoModels(
  w: FalcoWeights,
  outDir: string,
  o: FalcoModelOptions & {
    only?: ModelName[];
    onProgress?: (name: ModelName, i: number, n: number) => void;
  } = {},
): Promise<Record<string, WrittenModel>> {
  mkdirSync(outDir, { recursive: true });
  const names = (o.only ?? (Object.keys(MODEL_FILES) as ModelName[])).slice();
  const out: Record<string, WrittenModel> = {};
  for (const [i, name] of names.entries()) {
    o.onProgress?.(name, i, names.length);
    const t0 = performance.now();
    const g = GRAPH_BUILDERS[name](w, o);
    checkIO(name, g);
    const file = join(outDir, MODEL_FILES[name]);
    const sizes = E.save(g, file);
    out[name] = { file, ...sizes, buildMs: performance.now() - t0 };
    if (name === 'step')
      for (const batch of o.stepBatches ?? []) {
        if (batch === 1) continue;
        const t1 = performance.now();
        const gb = buildStepGraph(w, { batch, ...(o.trainable ? { gradRows: o.trainable } : {}) });
        const fb = join(outDir, stepBatchFile(batch));
        out[`step_b${batch}`] = { file: fb, ...E.save(gb, fb), buildMs: performance.now() - t1 };
      }
    // Let the event loop breathe between big models (progress bars redraw).
    await new Promise((r) => setImmediate(r));
  }
  return out;
}

/** The graph must expose exactly the contract's names (a mismatch is a bug here, not a user error). */
function checkIO(name: ModelName, g: E.Graph): void {
  const want = IO[name];
  const ins = g.inputs.map((t) => t.name);
  const outs = g.outputs.map((t) => t.name);
  const missing = [
    ...want.inputs.filter((n) => !ins.includes(n)),
    ...want.outputs.filter((n) => !outs.includes(n)),
  ];
  if (missing.length) throw new Error(`${name}: graph lacks contract tensors ${missing.join(', ')}`);
}
