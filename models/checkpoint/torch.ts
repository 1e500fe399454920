/**
 * The allow-list of Python globals a `torch.save` checkpoint may reference, and how each is rebuilt.
 * Tensors are not materialised here: the pickle only yields `PendingTensor` placeholders (storage key,
 * offset, shape, strides) so that the loader can decide which storages to read, and read each one once.
 */
import {
  CheckpointFormatError,
  PickleFormatError,
  TensorFormatError,
  UnsupportedClassError,
} from './errors.js';
import {
  PyObject,
  PyOrderedDict,
  isPyGlobal,
  isTuple,
  tuple,
  type PickleHooks,
  type PyDict,
  type PyGlobal,
  type PyValue,
} from './pickle.js';
import { halfBitsToNumber, type DType } from './tensor.js';

/** `argparse.Namespace` (e.g. e4e's `opts`): its attributes, as a dict. */
export class PyNamespace extends Map<PyValue, PyValue> {}

/** A reference to a serialized storage (zip: `data/<key>`; legacy: the key in the trailing list). */
export interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: DType;
  /** Declared element count (validated against the bytes actually present). */
  readonly numel: number;
  /** Legacy view storages: element offset into the base storage `key`. */
  readonly baseOffset: number;
}

/** A tensor as described by the pickle, before its data is read. */
export class PendingTensor {
  readonly kind = 'pending-tensor';
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
  get dtype(): DType {
    return this.storage.dtype;
  }
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  UntypedStorage: 'uint8',
};

const TORCH_DTYPES: Record<string, DType> = {
  float32: 'float32',
  float: 'float32',
  float64: 'float64',
  double: 'float64',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

interface StorageGlobal extends PyGlobal {
  readonly storageDType: DType;
}

export interface TorchHookOptions {
  /** What to do with a global outside the allow-list: throw (default) or keep it as an opaque `PyObject`. */
  unknownClasses?: 'error' | 'opaque';
}

function intArg(v: PyValue | undefined, what: string, fn: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new TensorFormatError(`${fn}: ${what} must be a non-negative integer, got ${describe(v)}`);
  }
  return v;
}

function intTuple(v: PyValue | undefined, what: string, fn: string): number[] {
  if (!Array.isArray(v))
    throw new TensorFormatError(`${fn}: ${what} must be a tuple of ints, got ${describe(v)}`);
  return (v as PyValue[]).map((x, i) => intArg(x, `${what}[${i}]`, fn));
}

export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return `${isTuple(v) ? 'tuple' : 'list'}(len ${(v as unknown[]).length})`;
  if (v instanceof Map) return 'dict';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return `${typeof v} ${String(v)}`;
}

function rebuildTensor(fn: string, args: readonly PyValue[]): PendingTensor {
  const [storage, offset, size, stride] = args;
  if (!(
    typeof storage === 'object' &&
    storage !== null &&
    (storage as Partial<StorageRef>).kind === 'storage'
  )) {
    throw new TensorFormatError(`${fn}: first argument is not a storage (got ${describe(storage)})`);
  }
  const shape = intTuple(size, 'size', fn);
  const strides = intTuple(stride, 'stride', fn);
  if (shape.length !== strides.length)
    throw new TensorFormatError(`${fn}: size has ${shape.length} dims but stride has ${strides.length}`);
  return new PendingTensor(storage as StorageRef, intArg(offset, 'storage_offset', fn), shape, strides);
}

function global(
  module: string,
  qualname: string,
  call: (args: readonly PyValue[]) => PyValue,
  extra?: Partial<PyGlobal>,
): PyGlobal {
  return { kind: 'global', module, qualname, call, ...extra };
}

function opaque(module: string, qualname: string): PyGlobal {
  return global(module, qualname, (args) => new PyObject(module, qualname, args));
}

function numpyScalarValue(dtype: PyValue, data: PyValue): PyValue {
  if (!(dtype instanceof PyObject) || dtype.qualname !== 'dtype')
    throw new UnsupportedClassError('numpy', 'scalar', `dtype argument is ${describe(dtype)}`);
  const descr = dtype.args[0];
  if (typeof descr !== 'string')
    throw new UnsupportedClassError('numpy', 'dtype', `descriptor ${describe(descr)}`);
  if (!(data instanceof Uint8Array))
    throw new UnsupportedClassError('numpy', 'scalar', `data is ${describe(data)}`);
  const state = dtype.state;
  const big = Array.isArray(state) && state[1] === '>';
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const le = !big;
  const want = (n: number): void => {
    if (data.length !== n)
      throw new UnsupportedClassError('numpy', 'scalar', `${descr} needs ${n} bytes, got ${data.length}`);
  };
  switch (descr) {
    case 'f8':
      want(8);
      return dv.getFloat64(0, le);
    case 'f4':
      want(4);
      return dv.getFloat32(0, le);
    case 'f2':
      want(2);
      return halfBitsToNumber(dv.getUint16(0, le));
    case 'i8': {
      want(8);
      const v = dv.getBigInt64(0, le);
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    case 'u8': {
      want(8);
      const v = dv.getBigUint64(0, le);
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    case 'i4':
      want(4);
      return dv.getInt32(0, le);
    case 'u4':
      want(4);
      return dv.getUint32(0, le);
    case 'i2':
      want(2);
      return dv.getInt16(0, le);
    case 'u2':
      want(2);
      return dv.getUint16(0, le);
    case 'i1':
      want(1);
      return dv.getInt8(0);
    case 'u1':
      want(1);
      return dv.getUint8(0);
    case 'b1':
      want(1);
      return data[0] !== 0;
    default:
      throw new UnsupportedClassError('numpy', 'scalar', `dtype ${descr}`);
  }
}

/**
 * Build the pickle hooks for one checkpoint. `storages` collects every storage reference seen (the
 * legacy format needs their dtypes to locate the raw data that follows the pickles).
 */
export function torchHooks(opts: TorchHookOptions, storages: Map<string, StorageRef>): PickleHooks {
  const table = new Map<string, PyGlobal>();
  const reg = (g: PyGlobal): void => void table.set(`${g.module}.${g.qualname}`, g);

  reg(
    global('collections', 'OrderedDict', (args) => {
      const d = new PyOrderedDict();
      const items = args[0];
      if (items !== undefined) {
        if (!Array.isArray(items))
          throw new PickleFormatError(`collections.OrderedDict argument is ${describe(items)}`);
        for (const kv of items as PyValue[]) {
          if (!Array.isArray(kv) || kv.length !== 2)
            throw new PickleFormatError('collections.OrderedDict items must be pairs');
          d.set(kv[0]!, kv[1]!);
        }
      }
      return d;
    }),
  );
  for (const fn of ['_rebuild_tensor_v2', '_rebuild_tensor']) {
    reg(global('torch._utils', fn, (args) => rebuildTensor(`torch._utils.${fn}`, args)));
  }
  // Parameters reduce to their data: requires_grad / hooks / extra state mean nothing for inference.
  for (const fn of ['_rebuild_parameter', '_rebuild_parameter_with_state']) {
    reg(
      global('torch._utils', fn, (args) => {
        if (!(args[0] instanceof PendingTensor))
          throw new TensorFormatError(`torch._utils.${fn}: data is ${describe(args[0])}`);
        return args[0];
      }),
    );
  }
  reg(
    global('torch._tensor', '_rebuild_from_type_v2', (args) => {
      const [func, newType, fargs] = args;
      if (!isPyGlobal(func) || !Array.isArray(fargs))
        throw new TensorFormatError('torch._tensor._rebuild_from_type_v2: bad arguments');
      const typeName = isPyGlobal(newType) ? `${newType.module}.${newType.qualname}` : describe(newType);
      if (
        typeName !== 'torch._tensor.Tensor' &&
        typeName !== 'torch.Tensor' &&
        typeName !== 'torch.nn.parameter.Parameter'
      ) {
        throw new UnsupportedClassError(
          'torch._tensor',
          '_rebuild_from_type_v2',
          `tensor subclass ${typeName}`,
        );
      }
      return func.call(fargs as readonly PyValue[]);
    }),
  );
  reg(
    global('torch._tensor', 'Tensor', () => {
      throw new UnsupportedClassError('torch._tensor', 'Tensor', 'direct construction');
    }),
  );
  reg(
    global('torch.nn.parameter', 'Parameter', () => {
      throw new UnsupportedClassError('torch.nn.parameter', 'Parameter', 'direct construction');
    }),
  );
  for (const mod of ['torch', 'torch.cuda']) {
    for (const [name, dtype] of Object.entries(STORAGE_DTYPES)) {
      const g: StorageGlobal = {
        ...global(mod, name, () => {
          throw new UnsupportedClassError(mod, name, 'storages are only supported as persistent ids');
        }),
        storageDType: dtype,
      };
      reg(g);
    }
  }
  for (const [name, dtype] of Object.entries(TORCH_DTYPES)) {
    // torch.float32 etc. pickle as attribute globals; they stay PyGlobal values (qualname = dtype name).
    reg(
      global('torch', name, () => {
        throw new UnsupportedClassError('torch', name, `dtype ${dtype} is not callable`);
      }),
    );
  }
  reg(global('torch', 'Size', (args) => tuple(intTuple(args[0], 'sizes', 'torch.Size'))));
  reg(
    global('torch', 'device', (args) => {
      const [type, index] = args;
      if (typeof type !== 'string') throw new PickleFormatError(`torch.device type is ${describe(type)}`);
      return index === undefined || index === null ? type : `${type}:${String(index)}`;
    }),
  );
  reg(
    global('argparse', 'Namespace', (args) => {
      if (args.length) throw new UnsupportedClassError('argparse', 'Namespace', 'positional arguments');
      return new PyNamespace();
    }),
  );
  reg(
    global('copyreg', '_reconstructor', (args) => {
      const [cls, base, state] = args;
      if (
        !isPyGlobal(cls) ||
        !isPyGlobal(base) ||
        base.qualname !== 'object' ||
        (state !== null && state !== undefined)
      ) {
        throw new UnsupportedClassError('copyreg', '_reconstructor', `for ${describe(cls)}`);
      }
      return cls.newobj ? cls.newobj([]) : cls.call([]);
    }),
  );
  reg(
    global('builtins', 'object', () => {
      throw new UnsupportedClassError('builtins', 'object', 'direct construction');
    }),
  );
  reg(
    global('__builtin__', 'object', () => {
      throw new UnsupportedClassError('__builtin__', 'object', 'direct construction');
    }),
  );
  for (const mod of ['builtins', '__builtin__']) {
    reg(global(mod, 'set', (args) => new Set((args[0] ?? []) as PyValue[])));
    reg(global(mod, 'frozenset', (args) => new Set((args[0] ?? []) as PyValue[])));
  }
  // Protocol 2 has no bytes opcode, so Python 3 pickles bytes as _codecs.encode(latin-1 text, 'latin1').
  reg(
    global('_codecs', 'encode', (args) => {
      const [s, enc] = args;
      if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1'))
        throw new UnsupportedClassError('_codecs', 'encode', `encoding ${describe(enc)}`);
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 255) throw new PickleFormatError('_codecs.encode: character outside latin-1');
        out[i] = c;
      }
      return out;
    }),
  );
  for (const mod of ['numpy.core.multiarray', 'numpy._core.multiarray']) {
    reg(global(mod, 'scalar', (args) => numpyScalarValue(args[0] ?? null, args[1] ?? null)));
  }
  reg(global('numpy', 'dtype', (args) => new PyObject('numpy', 'dtype', args)));

  return {
    findClass(module, qualname) {
      const g = table.get(`${module}.${qualname}`);
      if (g) return g;
      if (opts.unknownClasses === 'opaque') return opaque(module, qualname);
      throw new UnsupportedClassError(module, qualname);
    },
    persistentLoad(pid) {
      if (!Array.isArray(pid) || pid[0] !== 'storage')
        throw new CheckpointFormatError(`unsupported persistent id ${describe(pid)}`);
      const [, type, key, , numel, view] = pid as PyValue[];
      if (!isPyGlobal(type) || !('storageDType' in type)) {
        throw new UnsupportedClassError(
          isPyGlobal(type) ? type.module : '?',
          isPyGlobal(type) ? type.qualname : describe(type),
          'not a known storage type',
        );
      }
      if (typeof key !== 'string') throw new CheckpointFormatError(`storage key is ${describe(key)}`);
      const dtype = (type as StorageGlobal).storageDType;
      const n = intArg(numel, 'storage size', 'persistent_load');
      let ref: StorageRef = { kind: 'storage', key, dtype, numel: n, baseOffset: 0 };
      const prev = storages.get(key);
      if (prev && prev.dtype !== dtype)
        throw new TensorFormatError(`storage ${key} is used both as ${prev.dtype} and ${dtype}`);
      if (!prev) storages.set(key, ref);
      if (view !== undefined && view !== null) {
        // Legacy view storages: (view_key, offset, view_size) into the base storage `key`.
        if (!Array.isArray(view) || view.length !== 3)
          throw new CheckpointFormatError(`bad legacy storage view ${describe(view)}`);
        ref = {
          kind: 'storage',
          key,
          dtype,
          numel: intArg(view[2], 'view size', 'persistent_load'),
          baseOffset: intArg(view[1], 'view offset', 'persistent_load'),
        };
      }
      return ref;
    },
    build(obj, state) {
      if (obj instanceof PyNamespace || (obj instanceof Map && !(obj instanceof PyOrderedDict))) {
        if (!(state instanceof Map))
          throw new PickleFormatError(`BUILD state for a namespace is ${describe(state)}`);
        for (const [k, v] of state) obj.set(k, v);
        return obj;
      }
      if (obj instanceof PyOrderedDict) {
        // OrderedDict's reduce state is its instance __dict__ (normally empty, e.g. `_metadata` is set
        // later via setattr). Keep a non-empty one reachable without mixing it into the items.
        if (state instanceof Map && state.size > 0) (obj as PyOrderedDict & { attrs?: PyDict }).attrs = state;
        return obj;
      }
      if (obj instanceof PyObject) {
        obj.state = state;
        return obj;
      }
      throw new PickleFormatError(`BUILD on ${describe(obj)} is not supported`);
    },
  };
}
