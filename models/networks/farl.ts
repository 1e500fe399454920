/**
 * FaRL's visual encoder: OpenAI CLIP's `VisionTransformer` at ViT-B/16 (FALCO builds it with
 * `clip.load("ViT-B/16")` and loads the FaRL `state_dict` into it, so the activation is CLIP's
 * QuickGELU), truncated where FALCO's attribute loss reads it: the 197×width tokens after the
 * transformer, before `ln_post`.
 *
 * The configuration (width, depth, patch, resolution, heads, MLP width) is inferred from the weight
 * shapes (`inferFarlConfig`), so the demo bundle's narrow 2-block ViT loads through the same code; an
 * explicit `config` is still accepted and checked against the shapes.
 *
 * Design notes (why the graph looks the way it does):
 * - Tokens are kept as a 2-D [197, width] matrix (batch 1): every projection is then a plain 2-D GEMM
 *   against a constant weight, the fastest path of onnxruntime's CPU and CUDA kernels.
 * - Projections are our own `dense` op: forward is ONNX Gemm with transB=1 on the weight exactly as
 *   stored ([out, in]), and its input-VJP is a MatMul with that same stored weight. The forward and
 *   backward thus share one initializer and no Transpose of a weight appears anywhere.
 * - The attention scale 1/√64 = 1/8 is a power of two, so folding it into the Q rows of the fused
 *   in-projection is bit-exact (scaling by 2^-3 commutes with float rounding) and saves a Mul.
 * - Constants are cached per (graph, weights), so building the encoder twice in one graph (FALCO runs
 *   it on the real and the generated image) shares every initializer.
 */
import * as E from '../engine/index.js';
import { ShapeError, defineOp, type Graph, type Tensor } from '../engine/index.js';
import { quickGelu, split } from './vit/ops.js';
import { loadCheckpoint } from '../checkpoint/read.js';
import { stateDict } from '../checkpoint/statedict.js';
import { toFloat32, type Tensor as WeightTensor } from '../checkpoint/tensor.js';
import { shapeOf, vote } from './irse50/weights.js';

// ------------------------------------------------------------------------------------------ config

export interface FarlConfig {
  /** Input side in pixels (224). */
  resolution: number;
  /** Patch side (16). */
  patch: number;
  /** Token width (768). */
  width: number;
  /** Residual attention blocks (12). */
  layers: number;
  /** Attention heads (12: CLIP uses width / 64). */
  heads: number;
  /** CLIP's output projection width (512); only shape-checked, the tokens never use it. */
  outputDim: number;
  /** Hidden width of the MLP (default 4 · width, CLIP's fixed ratio). */
  mlpWidth?: number;
}

export const FARL_VITB16: Readonly<FarlConfig> = Object.freeze({
  resolution: 224,
  patch: 16,
  width: 768,
  layers: 12,
  heads: 12,
  outputDim: 512,
});

/** Number of tokens: one class token plus one per patch (197 at ViT-B/16, 224 px). */
export const farlTokens = (c: FarlConfig): number => (c.resolution / c.patch) ** 2 + 1;

/**
 * Every `visual.*` key the loader knows (without the prefix) with its shape; `required` is false for
 * ln_post/proj, which are off the token path (accepted and shape-checked when present).
 */
export function farlWeightShapes(
  c: FarlConfig = FARL_VITB16,
): Map<string, { shape: number[]; required: boolean }> {
  return expectedShapes(c);
}

function expectedShapes(c: FarlConfig): Map<string, { shape: number[]; required: boolean }> {
  const w = c.width;
  const mlp = c.mlpWidth ?? 4 * w;
  const m = new Map<string, { shape: number[]; required: boolean }>();
  const put = (k: string, shape: number[], required = true) => m.set(k, { shape, required });
  put('class_embedding', [w]);
  put('positional_embedding', [farlTokens(c), w]);
  put('conv1.weight', [w, 3, c.patch, c.patch]);
  put('ln_pre.weight', [w]);
  put('ln_pre.bias', [w]);
  for (let i = 0; i < c.layers; i++) {
    const p = `transformer.resblocks.${i}.`;
    put(`${p}attn.in_proj_weight`, [3 * w, w]);
    put(`${p}attn.in_proj_bias`, [3 * w]);
    put(`${p}attn.out_proj.weight`, [w, w]);
    put(`${p}attn.out_proj.bias`, [w]);
    put(`${p}ln_1.weight`, [w]);
    put(`${p}ln_1.bias`, [w]);
    put(`${p}mlp.c_fc.weight`, [mlp, w]);
    put(`${p}mlp.c_fc.bias`, [mlp]);
    put(`${p}mlp.c_proj.weight`, [w, mlp]);
    put(`${p}mlp.c_proj.bias`, [w]);
    put(`${p}ln_2.weight`, [w]);
    put(`${p}ln_2.bias`, [w]);
  }
  // Not on the path to the pre-ln_post tokens: a checkpoint may lack them without harm.
  put('ln_post.weight', [w], false);
  put('ln_post.bias', [w], false);
  put('proj', [w, c.outputDim], false);
  return m;
}

// ------------------------------------------------------------------------------------------ loading

/** The weight map does not fit the encoder; lists every problem at once. */
export class FarlWeightsError extends Error {
  constructor(
    message: string,
    readonly missing: readonly string[],
    readonly unexpected: readonly string[],
    readonly badShapes: readonly string[],
  ) {
    super(message);
    this.name = 'FarlWeightsError';
  }
}

/** Names (without `visual.`) the encoder knows, for maps already stripped of the prefix. */
const FARL_NAME =
  /^(class_embedding|positional_embedding|proj|conv1\.weight|ln_(pre|post)\.(weight|bias)|transformer\.resblocks\.\d+\..+)$/;
/** CLIP gives each head 64 channels. */
const HEAD_DIM = 64;
/** A stray huge block index would otherwise make a giant spec; CLIP's largest ViT has 48 blocks. */
const MAX_LAYERS = 256;

/**
 * The FaRL/CLIP ViT configuration that `visual.*` tensor shapes describe (`shape(name)` gives the
 * shape of `visual.<name>`):
 * - width W: the size class_embedding, conv1, ln_pre and positional_embedding agree on;
 * - layers: 1 + the largest `transformer.resblocks.<i>` index;
 * - patch P: conv1.weight [W, 3, P, P];
 * - resolution R = P·√(T − 1) from positional_embedding [T, W] (197 tokens at P = 16 → 224);
 * - heads = W / 64 as CLIP builds it (`vision_width // 64`), and 1 below 64 channels;
 * - MLP width: c_fc [M, W] (4W in CLIP); outputDim: proj [W, D] (512 when absent).
 * A size no tensor tells falls back to ViT-B/16's, so the validation then names the missing keys.
 */
export function inferFarlConfigFromShapes(
  shape: (name: string) => readonly number[] | undefined,
  names: Iterable<string>,
): FarlConfig {
  const dim = (name: string, rank: number, d: number): number | undefined => {
    const s = shape(name);
    return s && s.length === rank && s[d]! > 0 ? s[d] : undefined;
  };
  const width =
    vote([
      dim('class_embedding', 1, 0),
      dim('conv1.weight', 4, 0),
      dim('ln_pre.weight', 1, 0),
      dim('ln_pre.bias', 1, 0),
      dim('positional_embedding', 2, 1),
    ]) ?? FARL_VITB16.width;
  let layers = 0;
  for (const n of names) {
    const m = /^transformer\.resblocks\.(\d+)\./.exec(n);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (layers > MAX_LAYERS)
    throw new FarlWeightsError(
      `visual.transformer.resblocks.${layers - 1}.* implies ${layers} blocks (more than ${MAX_LAYERS})`,
      [],
      [],
      [],
    );
  const conv = shape('conv1.weight');
  const patch = conv?.length === 4 && conv[2] === conv[3] && conv[2]! > 0 ? conv[2]! : FARL_VITB16.patch;
  const tokens = dim('positional_embedding', 2, 0);
  let grid = FARL_VITB16.resolution / FARL_VITB16.patch;
  if (tokens !== undefined) {
    grid = Math.round(Math.sqrt(tokens - 1));
    if (tokens < 2 || grid * grid !== tokens - 1)
      throw new FarlWeightsError(
        `visual.positional_embedding has ${tokens} rows: not a class token plus a square grid of patches`,
        [],
        [],
        [`visual.positional_embedding [${shape('positional_embedding')!.join(', ')}]`],
      );
  }
  const mlps: Array<number | undefined> = [];
  for (let i = 0; i < layers; i++) {
    const p = `transformer.resblocks.${i}.mlp.`;
    mlps.push(dim(`${p}c_fc.weight`, 2, 0), dim(`${p}c_fc.bias`, 1, 0), dim(`${p}c_proj.weight`, 2, 1));
  }
  const mlpWidth = vote(mlps) ?? 4 * width;
  return {
    resolution: patch * grid,
    patch,
    width,
    layers,
    heads: width >= HEAD_DIM ? Math.floor(width / HEAD_DIM) : 1,
    outputDim: dim('proj', 2, 1) ?? FARL_VITB16.outputDim,
    ...(mlpWidth !== 4 * width ? { mlpWidth } : {}),
  };
}

/** The configuration a FaRL weight map describes (the keys as `loadFarlWeights` accepts them). */
export function inferFarlConfig(map: ReadonlyMap<string, WeightTensor>): FarlConfig {
  const visual = visualKeys(map);
  return inferFarlConfigFromShapes((n) => {
    const k = visual.get(n);
    return k === undefined ? undefined : shapeOf(map, k);
  }, visual.keys());
}

/**
 * `visual.*` names → source keys, from `visual.*` / `state_dict.visual.*` / `module.visual.*` keys, or
 * from bare encoder names when the map has none of those. Two sources for one name are an error.
 */
function visualKeys(map: ReadonlyMap<string, WeightTensor>): Map<string, string> {
  const strip = (k: string): string | undefined => {
    let s = k;
    if (s.startsWith('state_dict.')) s = s.slice('state_dict.'.length);
    if (s.startsWith('module.')) s = s.slice('module.'.length);
    return s.startsWith('visual.') ? s.slice('visual.'.length) : undefined;
  };
  const visual = new Map<string, string>(); // stripped name → source key
  const add = (name: string, from: string) => {
    const prev = visual.get(name);
    if (prev !== undefined)
      throw new FarlWeightsError(`keys ${prev} and ${from} both give FaRL weight visual.${name}`, [], [], []);
    visual.set(name, from);
  };
  for (const k of map.keys()) {
    const name = strip(k);
    if (name !== undefined) add(name, k);
  }
  // A map already stripped of `visual.` (e.g. stateDict(ckpt, 'state_dict.visual.')).
  if (visual.size === 0) for (const k of map.keys()) if (FARL_NAME.test(k)) add(k, k);
  return visual;
}

/** Validated encoder weights: float32 values keyed by the CLIP name without the `visual.` prefix. */
export interface FarlWeights {
  readonly config: Readonly<FarlConfig>;
  readonly tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>;
  /** `visual.*` keys of the source that the encoder does not know (kept out; see `strict`). */
  readonly ignored: readonly string[];
}

export interface LoadFarlOptions {
  /** Expected configuration (default: inferred from the shapes, `inferFarlConfig`); checked against them. */
  config?: FarlConfig;
  /**
   * Fail on unknown `visual.*` keys too. Off by default because FALCO loads the FaRL state dict with
   * `strict=False` (so upstream silently ignores extras); unknown keys are still reported in `ignored`.
   */
  strict?: boolean;
}

const LIST_MAX = 12;
const list = (xs: readonly string[]): string =>
  xs.slice(0, LIST_MAX).join(', ') + (xs.length > LIST_MAX ? `, … (${xs.length} in all)` : '');

/**
 * Take the encoder's weights out of a name → tensor map, from either
 * - a real FaRL checkpoint: `stateDict(ckpt)` (keys `state_dict.visual.*`), `stateDict(ckpt, 'state_dict.')`
 *   (keys `visual.*`), optionally with a DataParallel `module.` prefix; text-tower keys are ignored; or
 * - a fixture spec (`visual.*` keys), or a map already stripped of `visual.`.
 * float16/bfloat16/float64 weights are converted to float32 (FALCO calls `.float()` on the model).
 * Throws `FarlWeightsError` naming every missing key, unexpected key (strict) and wrong shape.
 */
export function loadFarlWeights(
  map: ReadonlyMap<string, WeightTensor>,
  opts: LoadFarlOptions = {},
): FarlWeights {
  // Keys first, tensors only for names we use: a lazy map (fixture spec) then generates nothing else,
  // and a real checkpoint's text tower is never touched.
  const visual = visualKeys(map);
  if (visual.size === 0) {
    const some = [...map.keys()].slice(0, 8);
    const full = expectedShapes(opts.config ?? FARL_VITB16);
    throw new FarlWeightsError(
      `no FaRL visual-encoder weights found: expected keys like visual.conv1.weight (optionally under state_dict. / module.); got ${map.size} keys${some.length ? ` such as ${some.join(', ')}` : ''}`,
      [...full.keys()].filter((k) => full.get(k)!.required).map((k) => `visual.${k}`),
      [],
      [],
    );
  }
  const config =
    opts.config ??
    inferFarlConfigFromShapes((n) => {
      const k = visual.get(n);
      return k === undefined ? undefined : shapeOf(map, k);
    }, visual.keys());
  const bad =
    config.width % config.heads !== 0
      ? `width ${config.width} is not divisible by ${config.heads} heads`
      : config.resolution % config.patch !== 0
        ? `resolution ${config.resolution} is not a multiple of patch ${config.patch}`
        : undefined;
  if (bad) throw new FarlWeightsError(`bad FaRL config ${JSON.stringify(config)}: ${bad}`, [], [], []);
  const expected = expectedShapes(config);

  const missing: string[] = [];
  const badShapes: string[] = [];
  const unexpected: string[] = [];
  const tensors = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [k, { shape, required }] of expected) {
    const from = visual.get(k);
    if (from === undefined) {
      if (required) missing.push(`visual.${k}`);
      continue;
    }
    const t = map.get(from)!;
    if (t.shape.join() !== shape.join()) {
      badShapes.push(`${from}: expected [${shape.join(', ')}], got [${t.shape.join(', ')}]`);
      continue;
    }
    if (!['float32', 'float16', 'bfloat16', 'float64'].includes(t.dtype)) {
      badShapes.push(`${from}: expected a floating-point tensor, got ${t.dtype}`);
      continue;
    }
    tensors.set(k, { shape, data: toFloat32(t) });
  }
  for (const [k, from] of visual) if (!expected.has(k)) unexpected.push(from);

  if (missing.length || badShapes.length || (opts.strict && unexpected.length)) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing ${missing.length} key(s): ${list(missing)}`);
    if (badShapes.length) parts.push(`wrong shape/dtype for ${badShapes.length} key(s): ${list(badShapes)}`);
    if (opts.strict && unexpected.length)
      parts.push(`unexpected ${unexpected.length} key(s): ${list(unexpected)}`);
    throw new FarlWeightsError(
      `FaRL ViT (width ${config.width}, ${config.layers} layers, patch ${config.patch}, ${config.resolution} px${opts.config ? '' : ', inferred from the shapes'}) weights do not fit: ${parts.join('; ')}`,
      missing,
      unexpected,
      badShapes,
    );
  }
  return { config: Object.freeze({ ...config }), tensors, ignored: unexpected };
}

/** `select` predicate for loadCheckpoint: read only the visual tower (the text tower is never loaded). */
export const farlCheckpointSelect = (path: string): boolean =>
  /^(state_dict\.)?(module\.)?visual\./.test(path);

/**
 * Read the official FaRL checkpoint (`FaRL-Base-Patch16-LAIONFace20M-ep64.pth`: a dict whose
 * `state_dict` holds CLIP-style keys) and return the validated encoder weights. Only `visual.*`
 * storages are read from disk.
 */
export async function loadFarlCheckpoint(path: string, opts: LoadFarlOptions = {}): Promise<FarlWeights> {
  const obj = await loadCheckpoint(path, { select: farlCheckpointSelect });
  return loadFarlWeights(stateDict(obj), opts);
}

// ------------------------------------------------------------------------------------------ ops

/**
 * y = x·Wᵀ + b for a 2-D activation x [n, in] and a constant W [out, in] as stored. One Gemm forward;
 * the input-VJP is gy·W (a MatMul on the same initializer).
 */
const denseOp = defineOp<null>({
  name: 'Dense',
  forward(g, [x, w, b]) {
    return [g.node1('Gemm', [x!, w!, b!], [x!.shape[0]!, w!.shape[0]!], 'float32', { transB: 1 })];
  },
  vjp({ inputs: [, w], needs }, [gy]) {
    if (needs[1] || needs[2]) throw new ShapeError('farl dense: weights are frozen (no weight gradients)');
    return [needs[0] ? E.matmul(gy!, w!) : null, null, null];
  },
});

function dense(x: Tensor, w: Tensor, b: Tensor): Tensor {
  if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[1] || b.rank !== 1 || b.shape[0] !== w.shape[0])
    throw new ShapeError(`farl dense: ${x} does not match weight ${w} / bias ${b}`);
  return denseOp([x, w, b], null)[0]!;
}

// ------------------------------------------------------------------------------------------ graph

interface Consts {
  get(key: string): Tensor;
  /** The fused in-projection with the Q third pre-scaled by 1/√headDim. */
  inProj(layer: number): { w: Tensor; b: Tensor };
  /** class_embedding + positional_embedding[0], as a [1, width] row. */
  clsRow(): Tensor;
  /** positional_embedding[1:], [patches, width]. */
  posPatches(): Tensor;
}

const constCache = new WeakMap<Graph, WeakMap<FarlWeights, Consts>>();

function constsFor(g: Graph, weights: FarlWeights): Consts {
  let perGraph = constCache.get(g);
  if (!perGraph) constCache.set(g, (perGraph = new WeakMap()));
  const hit = perGraph.get(weights);
  if (hit) return hit;
  const made = new Map<string, Tensor>();
  const memo = (key: string, mk: () => Tensor): Tensor => {
    let t = made.get(key);
    if (!t) made.set(key, (t = mk()));
    return t;
  };
  const raw = (key: string) => {
    const t = weights.tensors.get(key);
    if (!t) throw new FarlWeightsError(`FaRL weight visual.${key} is missing`, [`visual.${key}`], [], []);
    return t;
  };
  const c = weights.config;
  const w = c.width;
  const consts: Consts = {
    get: (key) =>
      memo(key, () => {
        const t = raw(key);
        return g.constant(t.data, t.shape, `farl.${key}`);
      }),
    inProj: (i) => {
      const p = `transformer.resblocks.${i}.attn.`;
      const scale = 1 / Math.sqrt(w / c.heads);
      const wt = memo(`${p}in_proj_weight/scaled`, () => {
        const src = raw(`${p}in_proj_weight`).data;
        const out = Float32Array.from(src);
        for (let j = 0; j < w * w; j++) out[j] = src[j]! * scale;
        return g.constant(out, [3 * w, w], `farl.${p}in_proj_weight_qscaled`);
      });
      const bt = memo(`${p}in_proj_bias/scaled`, () => {
        const src = raw(`${p}in_proj_bias`).data;
        const out = Float32Array.from(src);
        for (let j = 0; j < w; j++) out[j] = src[j]! * scale;
        return g.constant(out, [3 * w], `farl.${p}in_proj_bias_qscaled`);
      });
      return { w: wt, b: bt };
    },
    clsRow: () =>
      memo('cls+pos0', () => {
        // Rounded once in float32, as PyTorch's (cls + 0) + pos[0].
        const cls = raw('class_embedding').data;
        const pos = raw('positional_embedding').data;
        const out = new Float32Array(w);
        for (let j = 0; j < w; j++) out[j] = Math.fround(cls[j]! + pos[j]!);
        return g.constant(out, [1, w], 'farl.cls_plus_pos0');
      }),
    posPatches: () =>
      memo('pos[1:]', () => {
        const pos = raw('positional_embedding').data;
        return g.constant(pos.subarray(w), [farlTokens(c) - 1, w], 'farl.pos_patches');
      }),
  };
  perGraph.set(weights, consts);
  return consts;
}

/** Self-attention over `batch` faces whose tokens are stacked as [batch·n, width] rows. */
function attention(x: Tensor, k: Consts, i: number, c: FarlConfig, batch: number): Tensor {
  const n = x.shape[0]! / batch;
  const w = c.width;
  const h = c.heads;
  const d = w / h;
  const p = `transformer.resblocks.${i}.attn.`;
  const { w: wIn, b: bIn } = k.inProj(i);
  const qkv = dense(x, wIn, bIn); // [B·n, 3w], columns = (q | k | v), each head-major
  const [q2, k2, v2] = split(qkv, [w, w, w], 1);
  // Heads first: q, v → [(B,) h, n, d]; k straight to [(B,) h, d, n] so Q·Kᵀ is a plain batched MatMul.
  // Batch 1 keeps the rank-3 layout (the same graph as before batching existed).
  const heads = (t: Tensor, perm1: number[], permB: number[]) =>
    batch === 1
      ? E.transpose(E.reshape(t, [n, h, d]), perm1)
      : E.transpose(E.reshape(t, [batch, n, h, d]), permB);
  const q = heads(q2!, [1, 0, 2], [0, 2, 1, 3]);
  const kk = heads(k2!, [1, 2, 0], [0, 2, 3, 1]);
  const v = heads(v2!, [1, 0, 2], [0, 2, 1, 3]);
  const scores = E.matmul(q, kk); // [(B,) h, n, n], already scaled via Q
  const attn = E.softmax(scores, -1);
  const ctx = E.matmul(attn, v); // [(B,) h, n, d]
  const merged = E.reshape(E.transpose(ctx, batch === 1 ? [1, 0, 2] : [0, 2, 1, 3]), [batch * n, w]);
  return dense(merged, k.get(`${p}out_proj.weight`), k.get(`${p}out_proj.bias`));
}

/**
 * Build the encoder into `g` on `input` ([B, 3, 224, 224], the output of FALCO's farl224 transform,
 * values as given: FALCO applies no CLIP normalisation) and return the tokens [B, 197, 768] after the
 * transformer, before ln_post. The B faces' tokens travel as one [B·197, 768] matrix, so every
 * projection is one GEMM for the whole batch; only attention is per face. Differentiable w.r.t. `input`. Weight constants are shared between calls
 * on the same graph with the same `weights`.
 */
export function buildFarl(g: Graph, weights: FarlWeights, input: Tensor): Tensor {
  const c = weights.config;
  const B = input.shape[0]!;
  const want = [B, 3, c.resolution, c.resolution];
  if (input.graph !== g) throw new ShapeError(`buildFarl: input ${input} belongs to another graph`);
  if (input.rank !== 4 || B < 1 || input.shape.join() !== want.join() || input.dtype !== 'float32')
    throw new ShapeError(
      `buildFarl: input ${input} must be float32 [N, 3, ${c.resolution}, ${c.resolution}]`,
    );
  const k = constsFor(g, weights);
  const w = c.width;
  const patches = farlTokens(c) - 1;
  return g.scope('farl', () => {
    // Patch embedding: a stride-16 conv without bias, then [w, grid²] → [grid², w] tokens.
    const emb = E.conv2d(input, k.get('conv1.weight'), undefined, { stride: c.patch });
    let x: Tensor;
    if (B === 1) {
      const tokens = E.transpose(E.reshape(emb, [w, patches]), [1, 0]);
      x = E.concat([k.clsRow(), E.add(tokens, k.posPatches())], 0); // [197, w]
    } else {
      const tokens = E.transpose(E.reshape(emb, [B, w, patches]), [0, 2, 1]); // [B, 196, w]
      const cls = E.expand(E.reshape(k.clsRow(), [1, 1, w]), [B, 1, w]);
      x = E.reshape(E.concat([cls, E.add(tokens, k.posPatches())], 1), [B * (patches + 1), w]);
    }
    x = E.layerNorm(x, k.get('ln_pre.weight'), k.get('ln_pre.bias'), 1e-5);
    for (let i = 0; i < c.layers; i++) {
      const p = `transformer.resblocks.${i}.`;
      x = g.scope(`block${i}`, () => {
        const a = attention(
          E.layerNorm(x, k.get(`${p}ln_1.weight`), k.get(`${p}ln_1.bias`), 1e-5),
          k,
          i,
          c,
          B,
        );
        const y = E.add(x, a);
        const hdn = dense(
          E.layerNorm(y, k.get(`${p}ln_2.weight`), k.get(`${p}ln_2.bias`), 1e-5),
          k.get(`${p}mlp.c_fc.weight`),
          k.get(`${p}mlp.c_fc.bias`),
        );
        const m = dense(quickGelu(hdn), k.get(`${p}mlp.c_proj.weight`), k.get(`${p}mlp.c_proj.bias`));
        return E.add(y, m);
      });
    }
    return E.reshape(x, [B, patches + 1, w]);
  });
}
