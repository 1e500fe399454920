/**
 * A restricted pickle virtual machine: enough of protocols 0–5 for what `torch.save` writes (state
 * dicts, training checkpoints). It never executes anything: every GLOBAL is resolved through an
 * explicit allow-list supplied by the caller (`PickleHooks.findClass`), so an unknown class fails with
 * its name instead of running code, and an opcode we do not implement fails with its name.
 *
 * Python values map to JS as follows:
 *   None → null, bool → boolean, int → number (bigint when beyond ±2^53), float → number,
 *   str → string, bytes → Uint8Array, list → array, tuple → frozen array (Object.isFrozen),
 *   dict → Map (keys keep their Python type and insertion order), OrderedDict → PyOrderedDict (a Map),
 *   other objects → whatever the class hook returns (see torch.ts).
 */
import { PickleFormatError, UnsupportedOpcodeError } from './errors.js';
import type { Tensor } from './tensor.js';

/** A Python dict. Keys are primitives or tuples (compared by identity for tuples, as Map does). */
export type PyDict = Map<PyValue, PyValue>;
/** `collections.OrderedDict`; a Map subclass so it can be used exactly like a dict. */
export class PyOrderedDict extends Map<PyValue, PyValue> {}

/** An instance of a class the loader lets through as data (e.g. with `unknownClasses: 'opaque'`). */
export class PyObject {
  constructor(
    readonly module: string,
    readonly qualname: string,
    /** Constructor / reduce arguments. */
    readonly args: readonly PyValue[],
    /** State set by BUILD (`__setstate__` / `__dict__`), if any. */
    public state: PyValue | undefined = undefined,
  ) {}
}

/** A tensor whose data the caller chose not to load (see `loadCheckpoint`'s `select`). */
export class SkippedTensor {
  constructor(
    readonly dtype: Tensor['dtype'],
    readonly shape: readonly number[],
  ) {}
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | readonly PyValue[]
  | PyDict
  | Tensor
  | SkippedTensor
  | PyObject
  | PyGlobal
  | Set<PyValue>
  | PyExtension;

/** Loader-specific values living inside the object graph (storage refs, pending tensors...). */
export interface PyExtension {
  readonly kind: string;
}

/** A resolved GLOBAL: something callable (REDUCE / NEWOBJ) and optionally BUILD-able. */
export interface PyGlobal {
  readonly kind: 'global';
  readonly module: string;
  readonly qualname: string;
  /** REDUCE: `callable(*args)`; NEWOBJ: `cls.__new__(cls, *args)` (same hook unless `newobj` given). */
  call(args: readonly PyValue[]): PyValue;
  newobj?(args: readonly PyValue[]): PyValue;
}

export interface PickleHooks {
  /** Resolve `module.qualname`; must throw `UnsupportedClassError` for anything not allowed. */
  findClass(module: string, qualname: string): PyGlobal;
  /** BINPERSID / PERSID. */
  persistentLoad(pid: PyValue): PyValue;
  /** BUILD on an object the hooks created; return the (possibly new) object. */
  build(obj: PyValue, state: PyValue): PyValue;
}

export function isPyGlobal(v: unknown): v is PyGlobal {
  return typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'global';
}

export function isTuple(v: unknown): v is readonly PyValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

/** Make a Python tuple (a frozen array) from `items` (frozen in place). */
export function tuple<T>(items: T[]): readonly T[] {
  return Object.freeze(items);
}

// Opcode names for error messages: covers the whole pickle alphabet, including what we reject.
const OPNAMES: Record<number, string> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

export function opcodeName(op: number): string {
  return OPNAMES[op] ?? 'UNKNOWN';
}

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

/** Thrown (internally) when the pickle runs past the end of the available bytes. */
export class PickleTruncatedError extends PickleFormatError {}

export interface UnpickleResult {
  value: PyValue;
  /** Offset just past the STOP opcode (legacy files hold several pickles back to back). */
  end: number;
}

/** Run one pickle from `bytes[start..]` to its STOP opcode. */
export function unpickle(bytes: Uint8Array, hooks: PickleHooks, start = 0): UnpickleResult {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = start;
  let stack: StackItem[] = [];
  const metastack: StackItem[][] = [];
  const memo = new Map<number, PyValue>();
  let opStart = start;
  let op = 0;

  const need = (n: number): void => {
    if (pos + n > bytes.length) {
      throw new PickleTruncatedError(
        `pickle truncated: opcode ${opcodeName(op)} at offset ${opStart} needs ${n} more bytes at offset ${pos}, only ${bytes.length - pos} left`,
      );
    }
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new PickleFormatError(`length ${v} too large at offset ${opStart}`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const b = bytes.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = (): string => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) {
      pos = bytes.length;
      need(1);
    }
    const s = latin1.decode(bytes.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const decodeUtf8 = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch (e) {
      throw new PickleFormatError(`invalid UTF-8 in ${opcodeName(op)} at offset ${opStart}`, { cause: e });
    }
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined)
      throw new PickleFormatError(`pickle stack underflow at ${opcodeName(op)} (offset ${opStart})`);
    if (v === MARK)
      throw new PickleFormatError(`unexpected MARK on the stack at ${opcodeName(op)} (offset ${opStart})`);
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK)
      throw new PickleFormatError(`pickle stack has no object for ${opcodeName(op)} (offset ${opStart})`);
    return v;
  };
  // Note: callers must call popMark() before touching `stack` again (e.g. never `stack.push(popMark())`,
  // which would evaluate `stack` before popMark swaps it).
  const popMark = (): PyValue[] => {
    const items = stack as PyValue[];
    const prev = metastack.pop();
    if (prev === undefined)
      throw new PickleFormatError(`${opcodeName(op)} without a MARK (offset ${opStart})`);
    stack = prev;
    return items;
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i))
      throw new PickleFormatError(`memo key ${i} not found (${opcodeName(op)} at offset ${opStart})`);
    return memo.get(i)!;
  };
  const memoPut = (i: number): void => {
    memo.set(i, top());
  };
  const asDict = (d: PyValue): PyDict => {
    if (!(d instanceof Map))
      throw new PickleFormatError(`${opcodeName(op)} on a non-dict (offset ${opStart})`);
    return d;
  };
  const asList = (l: PyValue): PyValue[] => {
    if (!Array.isArray(l) || Object.isFrozen(l))
      throw new PickleFormatError(`${opcodeName(op)} on a non-list (offset ${opStart})`);
    return l as PyValue[];
  };
  const asGlobal = (g: PyValue): PyGlobal => {
    if (!isPyGlobal(g))
      throw new PickleFormatError(`${opcodeName(op)} on a non-callable (offset ${opStart})`);
    return g;
  };
  const asArgs = (a: PyValue): readonly PyValue[] => {
    if (!Array.isArray(a))
      throw new PickleFormatError(`${opcodeName(op)} arguments are not a tuple (offset ${opStart})`);
    return a;
  };
  const longFromBytes = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return smallInt(v);
  };

  for (;;) {
    opStart = pos;
    op = 0;
    op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw new PickleFormatError(`pickle protocol ${bytes[pos - 1]} is newer than 5`);
        break;
      case 0x95: // FRAME: framing is only a buffering hint; the payload follows inline.
        u64();
        break;
      case 0x2e: // STOP
        if (metastack.length !== 0) throw new PickleFormatError(`STOP with an open MARK (offset ${opStart})`);
        return { value: pop(), end: pos };
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length === 0 && metastack.length > 0) popMark();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(dv.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b:
        stack.push(u8());
        break;
      case 0x4d:
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(longFromBytes(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        need(4);
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n < 0) throw new PickleFormatError(`LONG4 with negative length at offset ${opStart}`);
        stack.push(longFromBytes(take(n)));
        break;
      }
      case 0x49: {
        // INT (text): also how protocol 0 spells True/False.
        const s = line().trim();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else stack.push(parseIntText(s, opStart));
        break;
      }
      case 0x4c: // LONG (text, trailing 'L')
        stack.push(parseIntText(line().trim().replace(/L$/, ''), opStart));
        break;
      case 0x46: {
        const s = line().trim();
        const v = Number(s);
        if (Number.isNaN(v) && !/nan/i.test(s))
          throw new PickleFormatError(`bad FLOAT literal ${JSON.stringify(s)} at offset ${opStart}`);
        stack.push(v);
        break;
      }
      case 0x47: // BINFLOAT: big-endian double
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58:
        stack.push(decodeUtf8(take(u32())));
        break;
      case 0x8c:
        stack.push(decodeUtf8(take(u8())));
        break;
      case 0x8d:
        stack.push(decodeUtf8(take(u64())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape text line)
        stack.push(
          line().replace(
            /\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g,
            (_m, a: string | undefined, b: string | undefined) =>
              String.fromCodePoint(parseInt(a ?? b ?? '0', 16)),
          ),
        );
        break;
      case 0x54: {
        // BINSTRING (Python 2 str): torch loads these with encoding='utf-8'; fall back to latin-1 for binary data.
        need(4);
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n < 0) throw new PickleFormatError(`BINSTRING with negative length at offset ${opStart}`);
        stack.push(py2String(take(n)));
        break;
      }
      case 0x55:
        stack.push(py2String(take(u8())));
        break;
      case 0x53: {
        // STRING: a Python repr literal
        const s = line().trim();
        const q = s[0];
        if ((q !== "'" && q !== '"') || s[s.length - 1] !== q)
          throw new PickleFormatError(`bad STRING literal at offset ${opStart}`);
        stack.push(unescapePyRepr(s.slice(1, -1)));
        break;
      }
      case 0x42:
        stack.push(take(u32()).slice());
        break;
      case 0x43:
        stack.push(take(u8()).slice());
        break;
      case 0x8e:
      case 0x96:
        stack.push(take(u64()).slice());
        break;
      case 0x5d:
        stack.push([]);
        break;
      case 0x6c: {
        // LIST
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x61: {
        const v = pop();
        asList(top()).push(v);
        break;
      }
      case 0x65: {
        const items = popMark();
        asList(top()).push(...items);
        break;
      }
      case 0x29:
        stack.push(tuple([]));
        break;
      case 0x74: {
        const items = popMark();
        stack.push(tuple(items));
        break;
      }
      case 0x85:
        stack.push(tuple([pop()]));
        break;
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x7d:
        stack.push(new Map());
        break;
      case 0x64: {
        const items = popMark();
        const d: PyDict = new Map();
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
        stack.push(d);
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        asDict(top()).set(k, v);
        break;
      }
      case 0x75: {
        const items = popMark();
        if (items.length % 2)
          throw new PickleFormatError(`SETITEMS with an odd number of items (offset ${opStart})`);
        const d = asDict(top());
        for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
        break;
      }
      case 0x8f:
        stack.push(new Set());
        break;
      case 0x90: {
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) throw new PickleFormatError(`ADDITEMS on a non-set (offset ${opStart})`);
        for (const it of items) s.add(it);
        break;
      }
      case 0x91: {
        const items = popMark();
        stack.push(new Set(items));
        break;
      }
      case 0x67:
        stack.push(memoGet(parseIntStrict(line(), opStart)));
        break;
      case 0x68:
        stack.push(memoGet(u8()));
        break;
      case 0x6a:
        stack.push(memoGet(u32()));
        break;
      case 0x70:
        memoPut(parseIntStrict(line(), opStart));
        break;
      case 0x71:
        memoPut(u8());
        break;
      case 0x72:
        memoPut(u32());
        break;
      case 0x94:
        memoPut(memo.size);
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(hooks.findClass(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          throw new PickleFormatError(`STACK_GLOBAL needs two strings (offset ${opStart})`);
        stack.push(hooks.findClass(module, name));
        break;
      }
      case 0x52: {
        const args = asArgs(pop());
        const fn = asGlobal(pop());
        stack.push(fn.call(args));
        break;
      }
      case 0x81: {
        const args = asArgs(pop());
        const cls = asGlobal(pop());
        stack.push(cls.newobj ? cls.newobj(args) : cls.call(args));
        break;
      }
      case 0x92: {
        const kwargs = pop();
        const args = asArgs(pop());
        const cls = asGlobal(pop());
        if (!(kwargs instanceof Map) || kwargs.size !== 0)
          throw new UnsupportedOpcodeError(op, opStart, 'NEWOBJ_EX (with keyword arguments)');
        stack.push(cls.newobj ? cls.newobj(args) : cls.call(args));
        break;
      }
      case 0x62: {
        const state = pop();
        const obj = pop();
        stack.push(hooks.build(obj, state));
        break;
      }
      case 0x51:
        stack.push(hooks.persistentLoad(pop()));
        break;
      case 0x50:
        stack.push(hooks.persistentLoad(line()));
        break;
      default:
        // INST, OBJ, EXT*, NEXT_BUFFER, READONLY_BUFFER and any byte that is not an opcode.
        throw new UnsupportedOpcodeError(op, opStart, opcodeName(op));
    }
  }
}

function smallInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function parseIntText(s: string, at: number): number | bigint {
  if (!/^[-+]?\d+$/.test(s))
    throw new PickleFormatError(`bad integer literal ${JSON.stringify(s)} at offset ${at}`);
  return smallInt(BigInt(s));
}

function parseIntStrict(s: string, at: number): number {
  const v = parseIntText(s.trim(), at);
  if (typeof v !== 'number' || v < 0)
    throw new PickleFormatError(`bad memo index ${JSON.stringify(s)} at offset ${at}`);
  return v;
}

function py2String(b: Uint8Array): string {
  try {
    return utf8.decode(b);
  } catch {
    return latin1.decode(b);
  }
}

function unescapePyRepr(s: string): string {
  return s.replace(/\\(x[0-9a-fA-F]{2}|[nrt\\'"0])/g, (_m, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    return (
      { n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', '0': '\0' } as Record<string, string>
    )[e]!;
  });
}
