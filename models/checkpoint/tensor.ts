/**
 * The one tensor type shared by the checkpoint reader, the checkpoint writer and the golden-fixture
 * spec loader, so network code can take weights from a real checkpoint or from a pattern spec through
 * the same `ReadonlyMap<string, Tensor>`.
 *
 * Data is always contiguous, row-major, in the tensor's own dtype. Node 20 has no Float16Array, so
 * float16 and bfloat16 keep their raw 16-bit patterns in a Uint16Array (use `toFloat32`).
 */
import { TensorFormatError } from './errors.js';

export type DType =
  'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export interface DTypeArrayMap {
  float32: Float32Array;
  float64: Float64Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

export type TensorData = DTypeArrayMap[DType];

export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  /** Sizes per dimension; `[]` is a 0-d scalar (one element). */
  readonly shape: readonly number[];
  /** Contiguous row-major elements (length = product of shape). */
  readonly data: DTypeArrayMap[D];
}

/** A read-only name → tensor mapping; what both `stateDict()` and `loadSpec()` return. */
export type TensorMap = ReadonlyMap<string, Tensor>;

export const DTYPE_ITEMSIZE: Readonly<Record<DType, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

const CTORS = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
} as const;

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(CTORS, s);
}

/** Product of the sizes; 1 for a 0-d shape. Rejects negative / non-integer sizes. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) {
    if (!Number.isSafeInteger(s) || s < 0)
      throw new TensorFormatError(`invalid tensor size ${s} in shape [${shape.join(', ')}]`);
    n *= s;
  }
  return n;
}

/** A zero-filled array of `n` elements of `dtype`. */
export function allocData<D extends DType>(dtype: D, n: number): DTypeArrayMap[D] {
  return new CTORS[dtype](n) as DTypeArrayMap[D];
}

/** View `length` elements of `dtype` over `buffer` at `byteOffset` (which must be item-aligned). */
export function viewData<D extends DType>(
  dtype: D,
  buffer: ArrayBuffer,
  byteOffset: number,
  length: number,
): DTypeArrayMap[D] {
  return new CTORS[dtype](buffer, byteOffset, length) as DTypeArrayMap[D];
}

/** Build a tensor, checking that the data length matches the shape and the array type the dtype. */
export function makeTensor<D extends DType>(
  dtype: D,
  shape: readonly number[],
  data: DTypeArrayMap[D],
): Tensor<D> {
  if (!isDType(dtype)) throw new TensorFormatError(`unknown dtype ${String(dtype)}`);
  const n = numel(shape);
  if (!(data instanceof CTORS[dtype])) {
    throw new TensorFormatError(
      `dtype ${dtype} needs a ${CTORS[dtype].name}, got ${(data as object).constructor.name}`,
    );
  }
  if (data.length !== n) {
    throw new TensorFormatError(
      `tensor data has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`,
    );
  }
  return { dtype, shape: Object.freeze([...shape]), data };
}

export function isTensor(v: unknown): v is Tensor {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as Partial<Tensor>;
  return isDType(t.dtype) && Array.isArray(t.shape) && ArrayBuffer.isView(t.data);
}

// Exact half → single conversion through a lookup table (65536 entries, built once, 256 KiB):
// every float16 value, subnormals included, is exactly representable in float32.
let HALF_TABLE: Float32Array | undefined;
function halfTable(): Float32Array {
  if (HALF_TABLE) return HALF_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = halfBitsToNumber(h);
  HALF_TABLE = t;
  return t;
}

/** IEEE binary16 bits → number (exact). */
export function halfBitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number → IEEE binary16 bits of its float32 rounding, round-to-nearest-even (as torch's `.half()` on float32). */
export function numberToHalfBits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  // A mantissa carry here correctly ripples into the exponent (up to infinity).
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/**
 * The tensor's values as float32, row-major. float32 data is returned as-is (no copy); float16 and
 * bfloat16 convert exactly; float64 and integers round to the nearest float32; bool → 0/1.
 */
export function toFloat32(t: Tensor): Float32Array {
  const d = t.data;
  switch (t.dtype) {
    case 'float32':
      return d as Float32Array;
    case 'float16': {
      const table = halfTable();
      const src = d as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case 'bfloat16': {
      const src = d as Uint16Array;
      const bits = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
      return new Float32Array(bits.buffer);
    }
    case 'int64': {
      const src = d as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
    default:
      return Float32Array.from(d as ArrayLike<number>);
  }
}

/** The tensor's values as plain JS values (numbers, bigint for int64 beyond 2^53, booleans). */
export function tensorValues(t: Tensor): (number | bigint | boolean)[] {
  switch (t.dtype) {
    case 'bool':
      return Array.from(t.data as Uint8Array, (v) => v !== 0);
    case 'float16':
      return Array.from(t.data as Uint16Array, halfBitsToNumber);
    case 'bfloat16':
      return Array.from(toFloat32(t));
    case 'int64':
      return Array.from(t.data as BigInt64Array, (v) =>
        v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v,
      );
    default:
      return Array.from(t.data as ArrayLike<number>);
  }
}
