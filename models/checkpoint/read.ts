/**
 * `torch.load` for TypeScript: reads `.pth/.pt` checkpoints in the current zip format (torch ≥ 1.6)
 * and the legacy pre-1.6 format, without Python. Storages are read by offset from a file handle, one
 * at a time, straight into the buffer the tensor keeps, so peak memory stays ≈ one copy of the
 * (selected) weights even for the ~700 MB FaRL checkpoint.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CheckpointFormatError, TensorFormatError } from './errors.js';
import {
  PickleTruncatedError,
  PyObject,
  SkippedTensor,
  isTuple,
  tuple,
  unpickle,
  type PyValue,
} from './pickle.js';
import { allocData, DTYPE_ITEMSIZE, makeTensor, numel, viewData, type Tensor } from './tensor.js';
import { PendingTensor, describe, torchHooks, type StorageRef, type TorchHookOptions } from './torch.js';
import { ZipReader } from './zip.js';

export interface LoadOptions extends TorchHookOptions {
  /**
   * Which tensors to read, by their path in the object (dict keys / list indices joined with '.',
   * e.g. `state_dict.visual.conv1.weight`). Unselected tensors become `SkippedTensor` (dtype and shape
   * only) and their storages are never read. Default: all.
   */
  select?: (path: string) => boolean;
}

export type CheckpointFormat = 'zip' | 'legacy';

export interface LoadedCheckpoint {
  format: CheckpointFormat;
  value: PyValue;
}

/** Load a checkpoint and return its top-level object with every (selected) tensor materialised. */
export async function loadCheckpoint(path: string, options: LoadOptions = {}): Promise<PyValue> {
  return (await loadCheckpointWithInfo(path, options)).value;
}

/** Like `loadCheckpoint`, also telling which on-disk format the file used. */
export async function loadCheckpointWithInfo(
  path: string,
  options: LoadOptions = {},
): Promise<LoadedCheckpoint> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new CheckpointFormatError(`cannot open checkpoint ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const size = (await fh.stat()).size;
    const head = new Uint8Array(Math.min(size, 512));
    await fh.read(head, 0, head.length, 0);
    if (size >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
      return { format: 'zip', value: await loadZip(fh, size, options, path) };
    }
    if (size >= 2 && head[0] === 0x80)
      return { format: 'legacy', value: await loadLegacy(fh, size, options, path) };
    if (size >= 262 && new TextDecoder('latin1').decode(head.subarray(257, 262)) === 'ustar') {
      throw new CheckpointFormatError(`${path}: tar-based checkpoint (torch < 0.4) is not supported`);
    }
    throw new CheckpointFormatError(
      `${path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; ${size} bytes)`,
    );
  } finally {
    await fh.close();
  }
}

/** Reads the raw bytes of one storage (fresh buffer, little-endian). */
type StorageSource = (ref: StorageRef) => Promise<Uint8Array>;

async function loadZip(fh: FileHandle, size: number, options: LoadOptions, path: string): Promise<PyValue> {
  const zip = await ZipReader.open(fh, size);
  const pkl = [...zip.entries.keys()].find((n) => n === 'data.pkl' || /^[^/]+\/data\.pkl$/.test(n));
  if (pkl === undefined)
    throw new CheckpointFormatError(`${path}: zip archive has no <archive>/data.pkl (not a torch.save file)`);
  const prefix = pkl.slice(0, pkl.length - 'data.pkl'.length);
  const bo = zip.entries.get(`${prefix}byteorder`);
  let bigEndian = false;
  if (bo) {
    const s = new TextDecoder().decode(await zip.read(bo)).trim();
    if (s !== 'little' && s !== 'big')
      throw new CheckpointFormatError(`${path}: unknown byteorder ${JSON.stringify(s)}`);
    bigEndian = s === 'big';
  }
  const storages = new Map<string, StorageRef>();
  const { value } = unpickle(await zip.read(zip.entries.get(pkl)!), torchHooks(options, storages));
  const source: StorageSource = async (ref) => {
    const entry = zip.entries.get(`${prefix}data/${ref.key}`);
    if (!entry)
      throw new CheckpointFormatError(
        `${path}: storage ${ref.key} is referenced but ${prefix}data/${ref.key} is missing`,
      );
    const bytes = await zip.read(entry);
    if (bigEndian) byteswap(bytes, DTYPE_ITEMSIZE[ref.dtype]);
    return bytes;
  };
  return materialize(value, source, options);
}

async function readExact(
  fh: FileHandle,
  pos: number,
  len: number,
  size: number,
  what: string,
): Promise<Uint8Array> {
  if (pos + len > size)
    throw new CheckpointFormatError(
      `checkpoint truncated: ${what} needs bytes ${pos}..${pos + len} but the file has ${size}`,
    );
  const out = new Uint8Array(new ArrayBuffer(len));
  let done = 0;
  while (done < len) {
    const { bytesRead } = await fh.read(out, done, Math.min(len - done, 1 << 30), pos + done);
    if (bytesRead === 0) throw new CheckpointFormatError(`checkpoint truncated while reading ${what}`);
    done += bytesRead;
  }
  return out;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

async function loadLegacy(
  fh: FileHandle,
  size: number,
  options: LoadOptions,
  path: string,
): Promise<PyValue> {
  // The four leading pickles are small, but their length is unknown up front: parse a prefix and
  // grow it only if a pickle runs past its end.
  let len = Math.min(size, 1 << 20);
  for (;;) {
    const buf = await readExact(fh, 0, len, size, 'legacy header');
    const storages = new Map<string, StorageRef>();
    try {
      const noClasses = torchHooks({}, new Map());
      const magic = unpickle(buf, noClasses, 0);
      if (magic.value !== LEGACY_MAGIC) {
        throw new CheckpointFormatError(
          `${path}: pickle file without the torch legacy magic number (got ${describe(magic.value)})`,
        );
      }
      const proto = unpickle(buf, noClasses, magic.end);
      if (proto.value !== 1001)
        throw new CheckpointFormatError(
          `${path}: unsupported legacy protocol version ${describe(proto.value)}`,
        );
      const sys = unpickle(buf, noClasses, proto.end);
      if (sys.value instanceof Map && sys.value.get('little_endian') === false) {
        throw new CheckpointFormatError(`${path}: big-endian legacy checkpoints are not supported`);
      }
      const obj = unpickle(buf, torchHooks(options, storages), sys.end);
      const keysP = unpickle(buf, noClasses, obj.end);
      const keys = keysP.value;
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string'))
        throw new CheckpointFormatError(`${path}: legacy storage key list is malformed`);
      // Raw storages follow in key order, each as <int64 element count><elements>.
      const located = new Map<string, { pos: number; numel: number }>();
      let pos = keysP.end;
      for (const key of keys as string[]) {
        const ref = storages.get(key);
        if (!ref)
          throw new CheckpointFormatError(
            `${path}: legacy storage ${key} is listed but never referenced, so its element size is unknown`,
          );
        const head = await readExact(fh, pos, 8, size, `size of storage ${key}`);
        const n = Number(new DataView(head.buffer).getBigInt64(0, true));
        if (!Number.isSafeInteger(n) || n < 0)
          throw new CheckpointFormatError(`${path}: storage ${key} has invalid size ${n}`);
        const bytes = n * DTYPE_ITEMSIZE[ref.dtype];
        if (pos + 8 + bytes > size)
          throw new CheckpointFormatError(
            `checkpoint truncated: storage ${key} needs bytes up to ${pos + 8 + bytes} but the file has ${size}`,
          );
        located.set(key, { pos: pos + 8, numel: n });
        pos += 8 + bytes;
      }
      const source: StorageSource = async (ref) => {
        const loc = located.get(ref.key);
        if (!loc)
          throw new CheckpointFormatError(
            `${path}: storage ${ref.key} is referenced but not in the storage list`,
          );
        return readExact(fh, loc.pos, loc.numel * DTYPE_ITEMSIZE[ref.dtype], size, `storage ${ref.key}`);
      };
      return await materialize(obj.value, source, options);
    } catch (e) {
      if (e instanceof PickleTruncatedError && len < size) {
        len = Math.min(size, len * 4);
        continue;
      }
      if (e instanceof PickleTruncatedError)
        throw new CheckpointFormatError(`checkpoint truncated: ${e.message}`, { cause: e });
      throw e;
    }
  }
}

function byteswap(b: Uint8Array, item: number): void {
  if (item === 1) return;
  for (let i = 0; i + item <= b.length; i += item) {
    for (let a = i, z = i + item - 1; a < z; a++, z--) {
      const t = b[a]!;
      b[a] = b[z]!;
      b[z] = t;
    }
  }
}

/** Visit every value reachable from `v` with its dotted path; `fn` may return a replacement. */
function walk(
  v: PyValue,
  path: string,
  fn: (v: PyValue, path: string) => PyValue | undefined,
  seen = new Set<object>(),
): PyValue {
  const r = fn(v, path);
  if (r !== undefined) return r;
  if (typeof v !== 'object' || v === null || seen.has(v)) return v;
  seen.add(v);
  const join = (k: PyValue): string => (path ? `${path}.${keyString(k)}` : keyString(k));
  if (Array.isArray(v)) {
    const items = v as PyValue[];
    const out = items.map((x, i) => walk(x, join(i), fn, seen));
    if (isTuple(v)) return out.some((x, i) => x !== items[i]) ? tuple(out) : v;
    for (let i = 0; i < out.length; i++) items[i] = out[i]!;
    return v;
  }
  if (v instanceof Map) {
    for (const [k, x] of v) {
      const y = walk(x, join(k), fn, seen);
      if (y !== x) v.set(k, y);
    }
    return v;
  }
  if (v instanceof PyObject && v.state !== undefined) v.state = walk(v.state, path, fn, seen);
  return v;
}

export function keyString(k: PyValue): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return String(k);
  if (k === null) return 'None';
  return describe(k);
}

async function materialize(root: PyValue, source: StorageSource, options: LoadOptions): Promise<PyValue> {
  const selected = new Set<PendingTensor>();
  walk(root, '', (v, p) => {
    if (v instanceof PendingTensor) {
      if (!options.select || options.select(p)) selected.add(v);
      return v;
    }
    return undefined;
  });
  // Group by storage so each storage is read once and dropped once its views are copied out.
  const byKey = new Map<string, PendingTensor[]>();
  for (const t of selected) {
    const list = byKey.get(t.storage.key) ?? [];
    list.push(t);
    byKey.set(t.storage.key, list);
  }
  const done = new Map<PendingTensor, Tensor>();
  for (const [, list] of byKey) {
    const bytes = await source(list[0]!.storage);
    for (const t of list) done.set(t, resolveView(t, bytes));
  }
  return walk(root, '', (v) => {
    if (v instanceof PendingTensor) return done.get(v) ?? new SkippedTensor(v.dtype, v.shape);
    return undefined;
  });
}

/** Copy the strided view `t` out of its storage bytes into a contiguous row-major tensor. */
function resolveView(t: PendingTensor, bytes: Uint8Array): Tensor {
  const { dtype } = t.storage;
  const item = DTYPE_ITEMSIZE[dtype];
  if (bytes.byteLength % item)
    throw new TensorFormatError(
      `storage ${t.storage.key} has ${bytes.byteLength} bytes, not a multiple of ${dtype}'s ${item}`,
    );
  const have = bytes.byteLength / item;
  const n = numel(t.shape);
  const start = t.storage.baseOffset + t.offset;
  const limit = t.storage.baseOffset + t.storage.numel;
  if (limit > have)
    throw new TensorFormatError(
      `storage ${t.storage.key} declares ${limit} ${dtype} elements but holds ${have}`,
    );
  let last = start;
  for (let d = 0; d < t.shape.length; d++) last += (t.shape[d]! - 1) * t.stride[d]!;
  if (n > 0 && (start >= limit || last >= limit)) {
    throw new TensorFormatError(
      `tensor view (offset ${t.offset}, shape [${t.shape.join(', ')}], stride [${t.stride.join(', ')}]) reaches element ${last} of storage ${t.storage.key} which has ${limit}`,
    );
  }
  const src = viewData(dtype, bytes.buffer as ArrayBuffer, bytes.byteOffset, have);
  // Row-major contiguous? (size-1 dims may carry any stride.)
  let contiguous = true;
  let expect = 1;
  for (let d = t.shape.length - 1; d >= 0; d--) {
    if (t.shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.shape[d]!;
  }
  if (contiguous) {
    // Whole storage: alias the freshly read buffer (no copy). Part of it: copy, so a small tensor
    // never pins a large storage in memory.
    if (start === 0 && n === have) return makeTensor(dtype, t.shape, src);
    return makeTensor(dtype, t.shape, src.slice(start, start + n) as typeof src);
  }
  const out = allocData(dtype, n) as unknown as { [i: number]: unknown };
  const s = src as unknown as { [i: number]: unknown };
  const nd = t.shape.length;
  const idx = new Array<number>(nd).fill(0);
  let off = start;
  for (let i = 0; i < n; i++) {
    out[i] = s[off];
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]!++;
      off += t.stride[d]!;
      if (idx[d]! < t.shape[d]!) break;
      off -= t.stride[d]! * t.shape[d]!;
      idx[d] = 0;
    }
  }
  return makeTensor(dtype, t.shape, out as unknown as typeof src);
}
