/**
 * Reader for TensorFlow.js layers/graph weight files (`*-weights_manifest.json` + binary shards), the format
 * `@vladmandic/face-api` ships its MIT-licensed weights in.
 *
 * Format facts (tfjs-core io): the manifest is an array of groups `{paths, weights}`; a group's shards are
 * concatenated in `paths` order and its weights are laid out back to back in `weights` order. A weight with a
 * `quantization: {dtype: 'uint8'|'uint16', scale, min}` entry stores one uint8/uint16 per value, dequantized as
 * `q·scale + min` (rounded for int32 weights); `quantization.dtype: 'float16'` stores IEEE half floats.
 * Unquantized float32/int32 use 4 bytes per value, little-endian.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface TfjsWeight {
  name: string;
  /** tfjs shape (NHWC conventions: conv filters are [kh, kw, in, out]). */
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

export interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

export interface ManifestGroup {
  paths: string[];
  weights: ManifestEntry[];
}

export class WeightFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightFormatError';
  }
}

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Reads every weight of a manifest into memory. Throws WeightFormatError on any mismatch. */
export function loadTfjsWeights(manifestPath: string): Map<string, TfjsWeight> {
  let groups: ManifestGroup[];
  try {
    groups = JSON.parse(readFileSync(manifestPath, 'utf8')) as ManifestGroup[];
  } catch (err) {
    throw new WeightFormatError(`cannot read weight manifest ${manifestPath}: ${(err as Error).message}`);
  }
  return decodeWeightGroups(groups, dirname(manifestPath), manifestPath);
}

/**
 * Decodes weight groups whose shards lie in `dir` (a layers manifest file, or the `weightsManifest` of a tfjs
 * graph model's model.json, which has the same format). `source` names the origin in errors.
 */
export function decodeWeightGroups(
  groups: ManifestGroup[],
  dir: string,
  source: string,
): Map<string, TfjsWeight> {
  const manifestPath = source;
  if (!Array.isArray(groups))
    throw new WeightFormatError(`${manifestPath}: manifest is not an array of groups`);
  const out = new Map<string, TfjsWeight>();
  for (const group of groups) {
    const shards = group.paths.map((p) => readFileSync(join(dir, p)));
    const bytes = Buffer.concat(shards);
    let offset = 0;
    for (const w of group.weights) {
      const n = numel(w.shape);
      if (w.dtype !== 'float32' && w.dtype !== 'int32') {
        throw new WeightFormatError(`${w.name}: unsupported dtype ${w.dtype}`);
      }
      const q = w.quantization;
      let data: Float32Array | Int32Array;
      if (q) {
        if (q.dtype === 'uint8' || q.dtype === 'uint16') {
          if (typeof q.scale !== 'number' || typeof q.min !== 'number') {
            throw new WeightFormatError(`${w.name}: ${q.dtype} quantization without scale/min`);
          }
          const width = q.dtype === 'uint8' ? 1 : 2;
          if (offset + n * width > bytes.length)
            throw new WeightFormatError(`${w.name}: shard data ends early`);
          data = w.dtype === 'float32' ? new Float32Array(n) : new Int32Array(n);
          for (let i = 0; i < n; i++) {
            const v = width === 1 ? bytes[offset + i] : bytes.readUInt16LE(offset + 2 * i);
            const x = v * q.scale + q.min;
            data[i] = w.dtype === 'int32' ? Math.round(x) : x;
          }
          offset += n * width;
        } else if (q.dtype === 'float16') {
          if (w.dtype !== 'float32')
            throw new WeightFormatError(`${w.name}: float16 quantization of ${w.dtype}`);
          if (offset + n * 2 > bytes.length) throw new WeightFormatError(`${w.name}: shard data ends early`);
          data = new Float32Array(n);
          for (let i = 0; i < n; i++) data[i] = halfToFloat(bytes.readUInt16LE(offset + 2 * i));
          offset += n * 2;
        } else {
          throw new WeightFormatError(`${w.name}: unknown quantization dtype ${q.dtype}`);
        }
      } else {
        if (offset + n * 4 > bytes.length) throw new WeightFormatError(`${w.name}: shard data ends early`);
        // Copy: the shard buffer's offset may not be 4-byte aligned.
        const copy = new Uint8Array(bytes.subarray(offset, offset + n * 4));
        data = w.dtype === 'float32' ? new Float32Array(copy.buffer) : new Int32Array(copy.buffer);
        offset += n * 4;
      }
      out.set(w.name, { name: w.name, shape: w.shape, dtype: w.dtype, data });
    }
    if (offset !== bytes.length) {
      throw new WeightFormatError(
        `${manifestPath}: weights use ${offset} bytes but the shards hold ${bytes.length}`,
      );
    }
  }
  return out;
}

/** Typed accessor that names the missing weight and checks its shape. */
export class WeightMap {
  readonly used = new Set<string>();
  constructor(
    readonly weights: Map<string, TfjsWeight>,
    readonly source: string,
  ) {}

  static load(manifestPath: string): WeightMap {
    return new WeightMap(loadTfjsWeights(manifestPath), manifestPath);
  }

  get(name: string, shape?: Array<number | null>): TfjsWeight {
    const w = this.weights.get(name);
    if (!w) throw new WeightFormatError(`${this.source}: missing weight ${name}`);
    if (shape && (shape.length !== w.shape.length || shape.some((d, i) => d !== null && d !== w.shape[i]))) {
      throw new WeightFormatError(
        `${this.source}: ${name} has shape [${w.shape}], expected [${shape.map((d) => d ?? '?')}]`,
      );
    }
    this.used.add(name);
    return w;
  }

  float(name: string, shape?: Array<number | null>): Float32Array {
    const w = this.get(name, shape);
    if (!(w.data instanceof Float32Array))
      throw new WeightFormatError(`${this.source}: ${name} is not float32`);
    return w.data;
  }
}
