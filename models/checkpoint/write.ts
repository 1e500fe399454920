/**
 * `torch.save` for TypeScript (current zip format), for tests and tools that need checkpoints in the
 * official layout (e.g. pattern-weight stand-ins for the real e4e / FaRL / StyleGAN2 files).
 *
 * Layout as written by PyTorch: `<archive>/data.pkl` (pickle protocol 2), `<archive>/byteorder`,
 * `<archive>/data/<key>` (one raw little-endian storage per tensor, 64-byte aligned, STORED), and
 * `<archive>/version`. Every tensor gets its own contiguous storage; the same Tensor object appearing
 * twice shares one storage, as tied weights do in PyTorch.
 */
import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { CheckpointError } from './errors.js';
import { PyOrderedDict, isTuple } from './pickle.js';
import { DTYPE_ITEMSIZE, isTensor, type DType, type Tensor } from './tensor.js';
import { PyNamespace, describe } from './torch.js';
import { ZipWriter } from './zip.js';

export class CheckpointWriteError extends CheckpointError {}

/** Forces a Python float for an integral JS number (plain integral numbers are written as ints). */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type SaveValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyFloat
  | Tensor
  | SaveValue[]
  | readonly SaveValue[]
  | ReadonlyMap<SaveKey, SaveValue>
  | { readonly [key: string]: SaveValue };
export type SaveKey = string | number | bigint | boolean | null;

const STORAGE_CLASS: Record<DType, string> = {
  float32: 'FloatStorage',
  float64: 'DoubleStorage',
  float16: 'HalfStorage',
  bfloat16: 'BFloat16Storage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  int16: 'ShortStorage',
  int8: 'CharStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

class Out {
  private buf = new Uint8Array(1024);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  byte(...b: number[]): void {
    this.ensure(b.length);
    for (const x of b) this.buf[this.len++] = x;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  u32(v: number): void {
    this.ensure(4);
    new DataView(this.buf.buffer).setUint32(this.len, v, true);
    this.len += 4;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const enc = new TextEncoder();

/**
 * Pickle `value` (protocol 2, the protocol torch.save uses). Tensors are emitted as
 * `_rebuild_tensor_v2` of a persistent storage id; `onTensor` assigns their storage keys.
 */
export function pickleCheckpoint(value: SaveValue, onTensor: (t: Tensor) => string): Uint8Array {
  const o = new Out();
  o.byte(0x80, 2);
  const globalOp = (module: string, name: string): void => {
    o.byte(0x63);
    o.bytes(enc.encode(`${module}\n${name}\n`));
  };
  const str = (s: string): void => {
    const b = enc.encode(s);
    o.byte(0x58);
    o.u32(b.length);
    o.bytes(b);
  };
  const int = (v: number | bigint): void => {
    const b = BigInt(v);
    if (b >= 0n && b < 256n) o.byte(0x4b, Number(b));
    else if (b >= 0n && b < 65536n) o.byte(0x4d, Number(b) & 0xff, Number(b) >> 8);
    else if (b >= -(2n ** 31n) && b < 2n ** 31n) {
      o.byte(0x4a);
      o.u32(Number(BigInt.asUintN(32, b)));
    } else {
      // LONG1: minimal two's-complement little-endian.
      const bytes: number[] = [];
      let x = b;
      for (;;) {
        bytes.push(Number(x & 0xffn));
        x >>= 8n;
        const sign = bytes[bytes.length - 1]! & 0x80;
        if ((x === 0n && !sign) || (x === -1n && sign)) break;
      }
      o.byte(0x8a, bytes.length, ...bytes);
    }
  };
  const float = (v: number): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    o.byte(0x47);
    o.bytes(b);
  };
  const intTuple = (xs: readonly number[]): void => {
    if (xs.length === 0) return o.byte(0x29);
    o.byte(0x28);
    for (const x of xs) int(x);
    o.byte(0x74);
  };
  const emptyOrderedDict = (): void => {
    globalOp('collections', 'OrderedDict');
    o.byte(0x29, 0x52);
  };
  const seen = new Set<object>();
  const save = (v: SaveValue, path: string): void => {
    if (v === null) return o.byte(0x4e);
    if (v === true) return o.byte(0x88);
    if (v === false) return o.byte(0x89);
    if (typeof v === 'bigint') return int(v);
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return int(v);
      return float(v);
    }
    if (typeof v === 'string') return str(v);
    if (v instanceof PyFloat) return float(v.value);
    if (typeof v !== 'object')
      throw new CheckpointWriteError(`cannot pickle ${typeof v} at ${path || '<root>'}`);
    if (isTensor(v)) {
      const key = onTensor(v);
      const shape = [...v.shape];
      const stride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
      const n = shape.reduce((a, b) => a * b, 1);
      globalOp('torch._utils', '_rebuild_tensor_v2');
      o.byte(0x28); // args
      o.byte(0x28); // persistent id ('storage', cls, key, location, numel)
      str('storage');
      globalOp('torch', STORAGE_CLASS[v.dtype]);
      str(key);
      str('cpu');
      int(n);
      o.byte(0x74, 0x51);
      int(0);
      intTuple(shape);
      intTuple(stride);
      o.byte(0x89);
      emptyOrderedDict();
      o.byte(0x74, 0x52);
      return;
    }
    if (seen.has(v))
      throw new CheckpointWriteError(
        `object at ${path || '<root>'} appears twice or contains itself; only tensors may be shared`,
      );
    seen.add(v);
    try {
      if (Array.isArray(v)) {
        const items = v as readonly SaveValue[];
        if (isTuple(v)) {
          o.byte(0x28);
          items.forEach((x, i) => save(x, `${path}[${i}]`));
          o.byte(0x74);
        } else {
          o.byte(0x5d);
          if (items.length) {
            o.byte(0x28);
            items.forEach((x, i) => save(x, `${path}[${i}]`));
            o.byte(0x65);
          }
        }
        return;
      }
      let entries: [SaveKey, SaveValue][];
      if (v instanceof Map) {
        if (v instanceof PyNamespace)
          throw new CheckpointWriteError(
            `argparse.Namespace at ${path || '<root>'} cannot be written; use a dict`,
          );
        if (v instanceof PyOrderedDict) emptyOrderedDict();
        else o.byte(0x7d);
        entries = [...v.entries()] as [SaveKey, SaveValue][];
      } else if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
        o.byte(0x7d);
        entries = Object.entries(v as Record<string, SaveValue>);
      } else {
        throw new CheckpointWriteError(`cannot pickle ${describe(v)} at ${path || '<root>'}`);
      }
      if (entries.length) {
        o.byte(0x28);
        for (const [k, x] of entries) {
          if (k !== null && typeof k === 'object')
            throw new CheckpointWriteError(`unsupported dict key type at ${path || '<root>'}`);
          save(k, path);
          save(x, path ? `${path}.${String(k)}` : String(k));
        }
        o.byte(0x75);
      }
    } finally {
      seen.delete(v);
    }
  };
  save(value, '');
  o.byte(0x2e);
  return o.result();
}

function tensorBytes(t: Tensor): Uint8Array {
  const d = t.data;
  if (t.dtype === 'bool') {
    // Normalise to 0/1: torch reads any other byte as an invalid bool.
    return Uint8Array.from(d as Uint8Array, (x) => (x ? 1 : 0));
  }
  const expected = d.length * DTYPE_ITEMSIZE[t.dtype];
  if (d.byteLength !== expected)
    throw new CheckpointWriteError(
      `tensor data of ${t.dtype} has ${d.byteLength} bytes, expected ${expected}`,
    );
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export interface SaveOptions {
  /** Top-level folder inside the zip (torch uses the file's stem in 1.x and "archive" in 2.x). */
  archiveName?: string;
  /** Write ZIP64 records even for small files (tests of the reader's ZIP64 path). */
  forceZip64?: boolean;
}

/** Write `value` as a torch.save zip checkpoint at `path` (overwrites). */
export async function saveCheckpoint(
  path: string,
  value: SaveValue,
  options: SaveOptions = {},
): Promise<void> {
  if (endianness() !== 'LE') throw new CheckpointWriteError('saveCheckpoint needs a little-endian host');
  const name = options.archiveName ?? 'archive';
  if (!/^[A-Za-z0-9_.-]+$/.test(name))
    throw new CheckpointWriteError(`invalid archive name ${JSON.stringify(name)}`);
  const keys = new Map<Tensor, string>();
  const pkl = pickleCheckpoint(value, (t) => {
    let k = keys.get(t);
    if (k === undefined) {
      k = String(keys.size);
      keys.set(t, k);
    }
    return k;
  });
  const fh = await open(path, 'w');
  try {
    const zip = new ZipWriter(fh, 64, options.forceZip64 ?? false);
    await zip.add(`${name}/data.pkl`, pkl);
    await zip.add(`${name}/byteorder`, enc.encode('little'));
    for (const [t, k] of keys) await zip.add(`${name}/data/${k}`, tensorBytes(t));
    await zip.add(`${name}/version`, enc.encode('3\n'));
    await zip.finish();
  } finally {
    await fh.close();
  }
}
