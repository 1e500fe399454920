/**
 * Weight validation shared by the IR-SE50 networks (ArcFace and the e4e encoder).
 *
 * Networks take a `ReadonlyMap<string, Tensor>` (the checkpoint reader's and the spec loader's common
 * type) and check it against the exact list of keys and shapes the architecture needs *before*
 * building anything, so a wrong or truncated checkpoint fails with one error listing every missing,
 * unexpected and mis-shaped tensor instead of a shape error deep inside graph construction.
 */
import { type Tensor as WeightTensor, toFloat32 } from '../../checkpoint/tensor.js';

export type WeightMap = ReadonlyMap<string, WeightTensor>;

/** key → expected shape. Insertion order = the order the network consumes them. */
export type KeySpec = Map<string, readonly number[]>;

export class WeightsError extends Error {
  constructor(
    message: string,
    readonly missing: string[] = [],
    readonly unexpected: string[] = [],
    readonly wrongShape: string[] = [],
  ) {
    super(message);
    this.name = 'WeightsError';
  }
}

const MAX_LISTED = 12;
const list = (xs: string[]): string =>
  xs.length <= MAX_LISTED
    ? xs.join(', ')
    : `${xs.slice(0, MAX_LISTED).join(', ')}, … (+${xs.length - MAX_LISTED} more)`;

/** Buffers PyTorch saves that inference never reads (BatchNorm's step counter). */
export const isIgnorableBuffer = (key: string): boolean =>
  key.endsWith('.num_batches_tracked') || key === 'num_batches_tracked';

/**
 * Check `weights` against `spec`. Keys that are neither expected nor ignorable are errors
 * (a different architecture or a wrong prefix), unless `allowExtra` says which ones to tolerate.
 */
export function checkWeights(
  what: string,
  weights: WeightMap,
  spec: KeySpec,
  allowExtra: (key: string) => boolean = () => false,
): void {
  const missing: string[] = [];
  const wrongShape: string[] = [];
  for (const [k, shape] of spec) {
    const t = meta(weights, k);
    if (!t) missing.push(k);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      wrongShape.push(`${k} [${t.shape.join(', ')}] (expected [${shape.join(', ')}])`);
    else if (!isFloat(t)) wrongShape.push(`${k} has dtype ${t.dtype} (expected a floating-point tensor)`);
  }
  const unexpected = [...weights.keys()].filter(
    (k) => !spec.has(k) && !isIgnorableBuffer(k) && !allowExtra(k),
  );
  if (!missing.length && !unexpected.length && !wrongShape.length) return;
  const parts: string[] = [];
  if (missing.length) parts.push(`${missing.length} missing: ${list(missing)}`);
  if (unexpected.length) parts.push(`${unexpected.length} unexpected: ${list(unexpected)}`);
  if (wrongShape.length) parts.push(`${wrongShape.length} wrong shape/dtype: ${list(wrongShape)}`);
  let hint = '';
  if (missing.length === spec.size && unexpected.length) {
    // Every key missing usually means a prefix mismatch (e.g. "module." from DataParallel); say so.
    const first = [...spec.keys()][0]!;
    const near = unexpected.find((k) => k.endsWith(first));
    if (near)
      hint = ` (the weights look prefixed with "${near.slice(0, near.length - first.length)}"; strip it or pass it as the prefix)`;
  }
  throw new WeightsError(
    `${what}: weights do not match the architecture: ${parts.join('; ')}${hint}`,
    missing,
    unexpected,
    wrongShape,
  );
}

/**
 * Shape and dtype of `key` without materialising it where the map can say (the fixtures' lazy spec
 * maps generate a tensor on every `get`; a full e4e spec is ~1 GB).
 */
export function meta(weights: WeightMap, key: string): Pick<WeightTensor, 'shape' | 'dtype'> | undefined {
  const lazy = weights as WeightMap & { shapeOf?: (k: string) => readonly number[] | undefined };
  if (typeof lazy.shapeOf === 'function') {
    const shape = lazy.shapeOf(key);
    return shape ? { shape, dtype: 'float32' } : undefined;
  }
  return weights.get(key);
}

/** Shape of `key` (lazily, see `meta`), or undefined when absent. */
export const shapeOf = (weights: WeightMap, key: string): readonly number[] | undefined =>
  meta(weights, key)?.shape;

/**
 * The value most of `candidates` agree on (ties: the earliest), ignoring undefined. Architecture
 * inference reads each size from every tensor that carries it, so one mis-shaped tensor is outvoted
 * and reported as a wrong shape instead of changing the inferred architecture.
 */
export function vote(candidates: ReadonlyArray<number | undefined>): number | undefined {
  const counts = new Map<number, number>();
  for (const c of candidates) if (c !== undefined) counts.set(c, (counts.get(c) ?? 0) + 1);
  let best: number | undefined;
  let bestN = 0;
  for (const [v, n] of counts) if (n > bestN) [best, bestN] = [v, n];
  return best;
}

function isFloat(t: Pick<WeightTensor, 'dtype'>): boolean {
  return t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'bfloat16' || t.dtype === 'float64';
}

/** A validated tensor (its shape and its values as float32; no copy for float32 data). */
export function tensorF32(weights: WeightMap, key: string): { shape: readonly number[]; data: Float32Array } {
  const t = weights.get(key);
  if (!t) throw new WeightsError(`weight ${key} is missing`, [key]);
  return { shape: t.shape, data: toFloat32(t) };
}

export const f32 = (weights: WeightMap, key: string): Float32Array => tensorF32(weights, key).data;

/** Select `prefix`-ed keys and strip the prefix (e.g. "encoder." of an e4e state dict). */
export function stripPrefix(weights: WeightMap, prefix: string): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  for (const [k, v] of weights) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), v);
  return out;
}
