/**
 * Helpers to get from a loaded checkpoint object to what network code wants: a flat name → tensor map.
 */
import { CheckpointError } from './errors.js';
import { PyObject, SkippedTensor, isTuple, type PyValue } from './pickle.js';
import { keyString } from './read.js';
import { isTensor, tensorValues, type Tensor } from './tensor.js';
import { describe } from './torch.js';

export class StateDictError extends CheckpointError {}

/**
 * Flatten every tensor reachable from `obj` through dicts (and OrderedDicts / Namespaces) into dotted
 * names, as PyTorch names parameters, keep those starting with `prefix`, and strip the prefix.
 * E.g. for an e4e checkpoint `stateDict(ckpt, 'state_dict.encoder.')` gives the encoder's weights, and
 * for the FALCO generator `stateDict(ckpt, 'generator_smooth.')`. Tensors skipped at load time
 * (`select`) are left out; non-tensor leaves are ignored; lists/tuples are not descended into.
 */
export function stateDict(obj: PyValue, prefix = ''): Map<string, Tensor> {
  if (!(obj instanceof Map)) throw new StateDictError(`stateDict expects a dict, got ${describe(obj)}`);
  const out = new Map<string, Tensor>();
  const visit = (v: PyValue, path: string): void => {
    if (isTensor(v)) {
      if (!path.startsWith(prefix)) return;
      const name = path.slice(prefix.length);
      if (out.has(name))
        throw new StateDictError(`two tensors flatten to the same name ${JSON.stringify(path)}`);
      out.set(name, v);
      return;
    }
    if (v instanceof Map) {
      for (const [k, x] of v) {
        const p = path ? `${path}.${keyString(k)}` : keyString(k);
        // Prune branches that cannot lead to the prefix.
        if (p.startsWith(prefix) || prefix.startsWith(p)) visit(x, p);
      }
    }
  };
  visit(obj, '');
  return out;
}

/** Navigate dict keys / list indices; throws a precise error naming the missing step. */
export function getPath(obj: PyValue, ...keys: (string | number)[]): PyValue {
  let cur: PyValue = obj;
  const done: string[] = [];
  for (const k of keys) {
    if (cur instanceof Map) {
      if (!cur.has(k))
        throw new StateDictError(
          `no key ${JSON.stringify(k)} at ${done.join('.') || '<root>'} (keys: ${[...cur.keys()].slice(0, 20).map(keyString).join(', ')})`,
        );
      cur = cur.get(k)!;
    } else if (Array.isArray(cur) && typeof k === 'number') {
      if (k < 0 || k >= cur.length)
        throw new StateDictError(`index ${k} out of range at ${done.join('.') || '<root>'}`);
      cur = cur[k]!;
    } else {
      throw new StateDictError(
        `cannot index ${describe(cur)} with ${JSON.stringify(k)} at ${done.join('.') || '<root>'}`,
      );
    }
    done.push(String(k));
  }
  return cur;
}

/**
 * A JSON-compatible rendering of a loaded object (for tests, debugging and logging checkpoint
 * metadata): dicts → objects, tuples/lists → arrays, tensors → {dtype, shape, values},
 * bigint → number when exact, else a decimal string.
 */
export function pyToJSON(v: PyValue): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (isTensor(v)) {
    return {
      dtype: v.dtype,
      shape: [...v.shape],
      values: tensorValues(v).map((x) => (typeof x === 'bigint' ? x.toString() : x)),
    };
  }
  if (v instanceof SkippedTensor) return { dtype: v.dtype, shape: [...v.shape], skipped: true };
  if (Array.isArray(v) || isTuple(v)) return (v as PyValue[]).map(pyToJSON);
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of v) o[keyString(k)] = pyToJSON(x);
    return o;
  }
  if (v instanceof Set) return [...v].map(pyToJSON);
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('base64') };
  if (v instanceof PyObject)
    return {
      class: `${v.module}.${v.qualname}`,
      args: v.args.map(pyToJSON),
      state: v.state === undefined ? undefined : pyToJSON(v.state),
    };
  return describe(v);
}
