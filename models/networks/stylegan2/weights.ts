/**
 * Checkpoint → generator weights. Keys are the genforce state-dict names; the real FALCO checkpoint
 * nests the dict under `generator_smooth` (the EMA generator FALCO loads), pattern specs give the bare
 * keys. Validation is strict like PyTorch's `load_state_dict(strict=True)`: every missing key,
 * unexpected key and wrong shape is listed in one error, so a wrong or truncated file is diagnosed in
 * one go instead of failing deep inside graph building.
 */
import { type Tensor as CkptTensor, toFloat32 } from '../../checkpoint/tensor.js';
import { RESOLUTIONS, StyleGAN2ConfigError, expectedKeys } from './config.js';

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

/** Float32 views of every generator tensor, validated against the architecture for `resolution`. */
export interface StyleGAN2Weights {
  resolution: number;
  get(key: string): Float32Array;
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

export function loadStyleGAN2Weights(map: ReadonlyMap<string, CkptTensor>, resolution?: number): StyleGAN2Weights {
  const dict = selectGeneratorDict(map);
  const res = resolution ?? inferResolution(dict);
  let want: Map<string, number[]>;
  try {
    want = expectedKeys(res);
  } catch (e) {
    if (e instanceof StyleGAN2ConfigError) throw new StyleGAN2WeightsError(e.message);
    throw e;
  }
  const missing = [...want.keys()].filter((k) => !dict.has(k));
  const unexpected = [...dict.keys()].filter((k) => !want.has(k));
  const wrongShape: string[] = [];
  const badType: string[] = [];
  // Lazy maps (pattern specs) can report a shape without materialising the tensor.
  const shapeOf = (dict as { shapeOf?: (k: string) => readonly number[] | undefined }).shapeOf?.bind(dict);
  for (const [k, shape] of want) {
    if (!dict.has(k)) continue;
    const t = shapeOf ? { shape: shapeOf(k)!, dtype: 'float32' } : dict.get(k)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      wrongShape.push(`${k}: expected ${fmtShape(shape)}, got ${fmtShape(t.shape)}`);
    if (!['float32', 'float16', 'bfloat16', 'float64'].includes(t.dtype)) badType.push(`${k}: dtype ${t.dtype} is not floating point`);
  }
  if (missing.length || unexpected.length || wrongShape.length || badType.length) {
    const parts = [`StyleGAN2 ${res}px generator weights do not match genforce's StyleGAN2Generator:`];
    const list = (title: string, xs: string[]) => {
      if (!xs.length) return;
      const shown = xs.slice(0, 40).join('; ');
      parts.push(`${title} (${xs.length}): ${shown}${xs.length > 40 ? `; ... ${xs.length - 40} more` : ''}`);
    };
    list('missing keys', missing);
    list('unexpected keys', unexpected);
    list('wrong shapes', wrongShape);
    list('wrong dtypes', badType);
    throw new StyleGAN2WeightsError(parts.join('\n  '), missing, unexpected, wrongShape);
  }
  const cache = new Map<string, Float32Array>();
  return {
    resolution: res,
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
