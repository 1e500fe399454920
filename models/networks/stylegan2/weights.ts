/**
 * Checkpoint → generator weights. Keys are the genforce state-dict names; the real FALCO checkpoint
 * nests the dict under `generator_smooth` (the EMA generator FALCO loads), pattern specs give the bare
 * keys.
 *
 * The architecture is inferred from the weights (resolution from the deepest `synthesis.output{b}`,
 * widths from the tensor shapes, see inferArch), then validation is strict like PyTorch's
 * `load_state_dict(strict=True)` against the key set that architecture implies: every missing key,
 * unexpected key and wrong shape is listed in one error, so a wrong or truncated file is diagnosed in
 * one go instead of failing deep inside graph building. Each width is read off SEVERAL tensors and the
 * majority wins, so a single mis-shaped tensor is reported as such instead of silently redefining the
 * architecture (and then blaming its correct neighbours).
 */
import { type Tensor as CkptTensor, toFloat32 } from '../../checkpoint/tensor.js';
import {
  type GeneratorArch,
  MAPPING_LAYERS,
  RESOLUTIONS,
  StyleGAN2ConfigError,
  W_DIM,
  Z_DIM,
  arch,
  channelsAt,
  describeArch,
  expectedKeys,
} from './config.js';

export class StyleGAN2WeightsError extends Error {
  constructor(
    message: string,
    readonly missing: string[] = [],
    readonly unexpected: string[] = [],
    readonly wrongShape: string[] = [],
  ) {
    super(message);
    this.name = 'StyleGAN2WeightsError';
  }
}

/** Float32 views of every generator tensor, validated against the (inferred) architecture. */
export interface StyleGAN2Weights {
  resolution: number;
  readonly arch: GeneratorArch;
  get(key: string): Float32Array;
}

export interface LoadStyleGAN2Options {
  /** Expected output resolution (default: inferred from the keys). */
  resolution?: number;
  /**
   * Accept w / z dimensions other than 512 (default false). FALCO's contract fixes them at 512: the
   * W+ codes the step model optimises, e4e's latents and the bundle's I/O shapes are all 512-wide, so
   * a generator with another latent width could not be used there and is rejected at load time.
   */
  anyLatentDim?: boolean;
}

const PREFIXES = ['generator_smooth.', 'generator.'];

/**
 * Accept either a bare generator dict or a flattened full checkpoint: with `generator_smooth.*` keys
 * present (FALCO's choice), those are used; else `generator.*` (as FALCO's loader falls back to).
 */
export function selectGeneratorDict(map: ReadonlyMap<string, CkptTensor>): ReadonlyMap<string, CkptTensor> {
  if (map.has('synthesis.early_layer.const')) return map;
  for (const p of PREFIXES) {
    if (!map.has(`${p}synthesis.early_layer.const`)) continue;
    const out = new Map<string, CkptTensor>();
    for (const [k, v] of map) if (k.startsWith(p)) out.set(k.slice(p.length), v);
    return out;
  }
  return map;
}

/** The resolution implied by the deepest `synthesis.output{b}` layer present. */
export function inferResolution(map: ReadonlyMap<string, CkptTensor>): number {
  const dict = selectGeneratorDict(map);
  let maxBlock = -1;
  for (const k of dict.keys()) {
    const m = /^synthesis\.output(\d+)\.weight$/.exec(k);
    if (m) maxBlock = Math.max(maxBlock, Number(m[1]));
  }
  const res = 4 * 2 ** maxBlock;
  if (maxBlock < 0 || !(RESOLUTIONS as readonly number[]).includes(res))
    throw new StyleGAN2WeightsError(
      `cannot infer the StyleGAN2 resolution: no synthesis.output{N}.weight keys in a dict of ${dict.size} tensors` +
        ` (is this a genforce StyleGAN2 generator checkpoint?)`,
    );
  return res;
}

const fmtShape = (s: readonly number[]) => `[${s.join(', ')}]`;

type ShapeLookup = (key: string) => readonly number[] | undefined;

function shapeLookup(dict: ReadonlyMap<string, CkptTensor>): ShapeLookup {
  // Lazy maps (pattern specs) can report a shape without materialising the tensor.
  const lazy = (dict as { shapeOf?: (k: string) => readonly number[] | undefined }).shapeOf?.bind(dict);
  return (k) => (dict.has(k) ? (lazy ? lazy(k) : dict.get(k)!.shape) : undefined);
}

/** The most frequent value (ties: the first seen), or undefined when there are no votes. */
function majority(votes: number[]): number | undefined {
  const counts = new Map<number, number>();
  let best: number | undefined;
  let bestN = 0;
  for (const v of votes) {
    const n = (counts.get(v) ?? 0) + 1;
    counts.set(v, n);
    if (n > bestN) [best, bestN] = [v, n];
  }
  return best;
}

/**
 * The architecture the tensors describe. Every width is a majority vote over all tensors that carry
 * it (e.g. a block's channels appear in ~13 shapes: its convs' out/in dims, biases, style affines,
 * the ToRGB and the next block's upsampling conv input); a tensor of the wrong rank does not vote.
 * Widths with no vote at all (their keys are missing, e.g. a forced higher resolution) fall back to
 * the full-size rule so the missing keys still get listed with plausible shapes.
 */
export function inferArch(map: ReadonlyMap<string, CkptTensor>, resolution?: number): GeneratorArch {
  const dict = selectGeneratorDict(map);
  const res = resolution ?? inferResolution(dict);
  let a;
  try {
    a = arch(res);
  } catch (e) {
    if (e instanceof StyleGAN2ConfigError) throw new StyleGAN2WeightsError(e.message);
    throw e;
  }
  const shapeOf = shapeLookup(dict);
  /** dims[axis] of `key` if it exists with the given rank. */
  const dim = (key: string, rank: number, axis: number): number[] => {
    const s = shapeOf(key);
    return s && s.length === rank ? [s[axis]!] : [];
  };
  const nb = a.blockResolutions.length;
  const channels: number[] = [];
  a.blockResolutions.forEach((r, b) => {
    const L = (i: number) => `synthesis.layer${i}`;
    const votes = [
      ...(b === 0 ? dim('synthesis.early_layer.const', 4, 1) : []),
      ...dim(`${L(2 * b)}.weight`, 4, 0),
      ...dim(`${L(2 * b)}.weight`, 4, 1),
      ...dim(`${L(2 * b)}.bias`, 1, 0),
      ...dim(`${L(2 * b)}.style.weight`, 2, 0),
      ...dim(`${L(2 * b)}.style.bias`, 1, 0),
      ...(b > 0 ? [...dim(`${L(2 * b - 1)}.weight`, 4, 0), ...dim(`${L(2 * b - 1)}.bias`, 1, 0)] : []),
      ...(b < nb - 1
        ? [
            ...dim(`${L(2 * b + 1)}.weight`, 4, 1),
            ...dim(`${L(2 * b + 1)}.style.weight`, 2, 0),
            ...dim(`${L(2 * b + 1)}.style.bias`, 1, 0),
          ]
        : []),
      ...dim(`synthesis.output${b}.weight`, 4, 1),
      ...dim(`synthesis.output${b}.style.weight`, 2, 0),
      ...dim(`synthesis.output${b}.style.bias`, 1, 0),
    ];
    channels.push(majority(votes) ?? channels[b - 1] ?? channelsAt(r));
  });

  let maxDense = -1;
  const wVotes: number[] = [...dim('truncation.w_avg', 1, 0)];
  for (const k of dict.keys()) {
    const m = /^mapping\.dense(\d+)\.(weight|bias)$/.exec(k);
    if (m) {
      const i = Number(m[1]);
      maxDense = Math.max(maxDense, i);
      if (m[2] === 'bias') wVotes.push(...dim(k, 1, 0));
      else wVotes.push(...dim(k, 2, 0), ...(i > 0 ? dim(k, 2, 1) : []));
    } else if (/^synthesis\.(layer|output)\d+\.style\.weight$/.test(k)) wVotes.push(...dim(k, 2, 1));
  }
  const wDim = majority(wVotes) ?? W_DIM;
  const zDim = majority(dim('mapping.dense0.weight', 2, 1)) ?? wDim;
  return { ...a, channels, wDim, zDim, mappingLayers: maxDense >= 0 ? maxDense + 1 : MAPPING_LAYERS };
}

/**
 * Validate a generator state dict. The second argument is the expected resolution (as before) or
 * options; the architecture is inferred from the weights either way (see inferArch).
 */
export function loadStyleGAN2Weights(
  map: ReadonlyMap<string, CkptTensor>,
  resolutionOrOptions?: number | LoadStyleGAN2Options,
): StyleGAN2Weights {
  const opts: LoadStyleGAN2Options =
    typeof resolutionOrOptions === 'number'
      ? { resolution: resolutionOrOptions }
      : (resolutionOrOptions ?? {});
  const dict = selectGeneratorDict(map);
  const inferred = inferArch(dict, opts.resolution);
  // With FALCO's fixed 512-D latents, checking against 512 (not the vote) names the exact tensors that
  // disagree, e.g. a mis-shaped mapping.dense0.weight (z has no second witness to out-vote it).
  const a: GeneratorArch = opts.anyLatentDim ? inferred : { ...inferred, wDim: W_DIM, zDim: Z_DIM };
  const res = a.resolution;
  const want = expectedKeys(a);
  const missing = [...want.keys()].filter((k) => !dict.has(k));
  const unexpected = [...dict.keys()].filter((k) => !want.has(k));
  const wrongShape: string[] = [];
  const badType: string[] = [];
  const other: string[] = [];
  const lazy = typeof (dict as { shapeOf?: unknown }).shapeOf === 'function';
  const shapeOf = shapeLookup(dict);
  for (const [k, shape] of want) {
    if (!dict.has(k)) continue;
    const t = lazy ? { shape: shapeOf(k)!, dtype: 'float32' } : dict.get(k)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      wrongShape.push(`${k}: expected ${fmtShape(shape)}, got ${fmtShape(t.shape)}`);
    if (!['float32', 'float16', 'bfloat16', 'float64'].includes(t.dtype))
      badType.push(`${k}: dtype ${t.dtype} is not floating point`);
  }
  const zeroWidth = a.channels.some((c) => c < 1) || a.wDim < 1 || a.zDim < 1;
  if (zeroWidth) other.push('a width of 0 (empty tensors)');
  if (!opts.anyLatentDim && inferred.wDim !== W_DIM)
    other.push(
      `the tensors describe a ${inferred.wDim}-D W space; FALCO's bundle contract needs w = z = ${W_DIM} (anyLatentDim accepts others)`,
    );
  if (missing.length || unexpected.length || wrongShape.length || badType.length || other.length) {
    const parts = [
      `StyleGAN2 ${res}px generator weights do not match genforce's StyleGAN2Generator (architecture read off the weights: ${describeArch(a)}):`,
    ];
    const list = (title: string, xs: string[]) => {
      if (!xs.length) return;
      const shown = xs.slice(0, 40).join('; ');
      parts.push(`${title} (${xs.length}): ${shown}${xs.length > 40 ? `; ... ${xs.length - 40} more` : ''}`);
    };
    list('missing keys', missing);
    list('unexpected keys', unexpected);
    list('wrong shapes', wrongShape);
    list('wrong dtypes', badType);
    list('unsupported architecture', other);
    throw new StyleGAN2WeightsError(parts.join('\n  '), missing, unexpected, wrongShape);
  }
  const cache = new Map<string, Float32Array>();
  return {
    resolution: res,
    arch: a,
    get(key: string): Float32Array {
      let v = cache.get(key);
      if (!v) {
        const t = dict.get(key);
        if (!t) throw new StyleGAN2WeightsError(`no weight ${key}`, [key]);
        v = toFloat32(t);
        const bad = v.findIndex((x) => !Number.isFinite(x));
        if (bad >= 0) throw new StyleGAN2WeightsError(`weight ${key} has a non-finite value at index ${bad}`);
        cache.set(key, v);
      }
      return v;
    },
  };
}
