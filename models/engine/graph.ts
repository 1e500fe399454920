/**
 * A small ONNX graph builder with a gradient tape.
 *
 * Why hand-written: onnxruntime-node ships the inference build (no training operators, no autograd),
 * and no maintained JS library builds ONNX graphs with reverse-mode differentiation. We emit only
 * standard ONNX operators, so the same model runs on onnxruntime's CPU and CUDA providers.
 *
 * Model: every tensor is symbolic with a static shape and dtype. Primitive ops (see `defineOp`) emit
 * ONNX nodes and record themselves on the graph's tape; `grad()` (autodiff.ts) walks the tape backwards
 * and asks each op for its vector-Jacobian product, which is written with the same ops.
 */
import { type OnnxT, onnx } from './proto.js';

export type DType = 'float32' | 'float16' | 'int64' | 'int32' | 'bool' | 'uint8';
export type Shape = readonly number[];
export type TypedArray = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export const ONNX_DTYPE: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  bool: onnx.TensorProto.DataType.BOOL,
  uint8: onnx.TensorProto.DataType.UINT8,
};

export class ShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

export const numel = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);
export const shapeStr = (shape: Shape): string => `[${shape.join(', ')}]`;

/** A symbolic tensor: a name in the ONNX graph plus its static shape and dtype. */
export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly shape: Shape,
    readonly dtype: DType,
  ) {}
  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return numel(this.shape);
  }
  toString(): string {
    return `${this.name}${shapeStr(this.shape)}:${this.dtype}`;
  }
}

export interface Initializer {
  name: string;
  dtype: DType;
  dims: number[];
  data: TypedArray;
}

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] };

/** One recorded application of a primitive op. */
export interface TapeEntry {
  op: OpDef<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: unknown;
}

/** What an op's VJP receives. `needs[i]` says whether input i needs a gradient (skip work otherwise). */
export interface VjpContext<A> {
  g: Graph;
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: A;
  needs: boolean[];
}

/**
 * A primitive op: its forward (emits ONNX nodes, returns outputs) and its vector-Jacobian product
 * (given output cotangents, returns input cotangents or null), defined side by side.
 */
export interface OpDef<A> {
  name: string;
  forward(g: Graph, inputs: Tensor[], attrs: A): Tensor[];
  vjp(ctx: VjpContext<A>, gradOutputs: Tensor[]): Array<Tensor | null>;
}

export function defineOp<A>(def: OpDef<A>): (inputs: Tensor[], attrs: A) => Tensor[] {
  return (inputs, attrs) => {
    const g = inputs[0]!.graph;
    for (const t of inputs)
      if (t.graph !== g) throw new ShapeError(`${def.name}: inputs from different graphs`);
    const outputs = def.forward(g, inputs, attrs);
    const entry: TapeEntry = { op: def, inputs, outputs, attrs };
    g.tape.push(entry);
    for (const o of outputs) g.producers.set(o.name, entry);
    return outputs;
  };
}

export class Graph {
  readonly nodes: OnnxT.INodeProto[] = [];
  readonly initializers = new Map<string, Initializer>();
  readonly inputs: Tensor[] = [];
  readonly outputs: Tensor[] = [];
  readonly tape: TapeEntry[] = [];
  /** The tape entry that made each taped tensor (lets an op look at how its input was built). */
  readonly producers = new Map<string, TapeEntry>();
  /** Every tensor by name (node outputs, inputs, constants): what cost.ts reads the shapes from. */
  readonly tensors = new Map<string, Tensor>();
  private counter = 0;
  private readonly scalarCache = new Map<string, Tensor>();
  private readonly scopes: string[] = [];

  constructor(readonly name = 'graph') {}

  /** Unique tensor/node name, prefixed by the current scope (helps reading the graph and errors). */
  fresh(base: string): string {
    const scope = this.scopes.length ? this.scopes.join('/') + '/' : '';
    return `${scope}${base}_${this.counter++}`;
  }

  /** Run `fn` with names prefixed by `scope` (e.g. a layer name). */
  scope<T>(scope: string, fn: () => T): T {
    this.scopes.push(scope);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  input(name: string, shape: Shape, dtype: DType = 'float32'): Tensor {
    if (this.inputs.some((t) => t.name === name)) throw new ShapeError(`duplicate graph input ${name}`);
    const t = new Tensor(this, name, [...shape], dtype);
    this.inputs.push(t);
    this.tensors.set(name, t);
    return t;
  }

  /** Mark a tensor as a graph output under `name` (an Identity node renames it). */
  output(t: Tensor, name: string): Tensor {
    const out = new Tensor(this, name, t.shape, t.dtype);
    this.nodes.push({ opType: 'Identity', input: [t.name], output: [name], name: `out_${name}` });
    this.outputs.push(out);
    return out;
  }

  /** A constant (initializer). Data is referenced, not copied: don't mutate it afterwards. */
  constant(data: TypedArray, shape: Shape, name?: string, dtype?: DType): Tensor {
    const dt = dtype ?? dtypeOf(data);
    if (data.length !== numel(shape))
      throw new ShapeError(`constant ${name ?? ''}: ${data.length} values for shape ${shapeStr(shape)}`);
    const n = name ? this.uniqueName(name) : this.fresh('const');
    this.initializers.set(n, { name: n, dtype: dt, dims: [...shape], data });
    const t = new Tensor(this, n, [...shape], dt);
    this.tensors.set(n, t);
    return t;
  }

  /** A float32 scalar constant of shape [] (cached, so repeated scalars share one initializer). */
  scalar(v: number, dtype: 'float32' | 'int64' = 'float32'): Tensor {
    const key = `${dtype}:${Object.is(v, -0) ? '-0' : v}`;
    let t = this.scalarCache.get(key);
    if (!t) {
      const data = dtype === 'int64' ? BigInt64Array.of(BigInt(v)) : Float32Array.of(v);
      t = this.constant(data, [], `scalar_${this.counter++}`);
      this.scalarCache.set(key, t);
    }
    return t;
  }

  /** An int64 1-D constant (shapes, axes, pads for ONNX ops that take them as inputs). */
  ints(values: readonly number[]): Tensor {
    return this.constant(BigInt64Array.from(values.map((v) => BigInt(v))), [values.length]);
  }

  isConstant(t: Tensor): boolean {
    return this.initializers.has(t.name);
  }

  constantData(t: Tensor): TypedArray | undefined {
    return this.initializers.get(t.name)?.data;
  }

  /**
   * Emit one raw ONNX node. Output shapes are given by the caller (ops compute them), which is what
   * lets us report shape errors at build time with tensor names instead of at session creation.
   */
  node(
    opType: string,
    inputs: Array<Tensor | null>,
    outputs: Array<{ shape: Shape; dtype: DType }>,
    attrs: Record<string, AttrValue> = {},
    domain?: string,
  ): Tensor[] {
    const outs = outputs.map((o) => new Tensor(this, this.fresh(opType), [...o.shape], o.dtype));
    for (const t of outs) this.tensors.set(t.name, t);
    this.nodes.push({
      opType,
      domain,
      name: this.fresh(`n_${opType}`),
      input: inputs.map((t) => (t ? t.name : '')),
      output: outs.map((t) => t.name),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  node1(
    opType: string,
    inputs: Array<Tensor | null>,
    shape: Shape,
    dtype: DType = 'float32',
    attrs: Record<string, AttrValue> = {},
  ): Tensor {
    return this.node(opType, inputs, [{ shape, dtype }], attrs)[0]!;
  }

  private uniqueName(name: string): string {
    if (!this.initializers.has(name) && !this.inputs.some((t) => t.name === name)) return name;
    return this.fresh(name);
  }
}

function attribute(name: string, v: AttrValue): OnnxT.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new ShapeError(`attribute ${name}=${v}: use {float: v} for floats`);
    return { name, type: T.INT, i: v };
  }
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}

export function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint16Array) return 'float16';
  return 'uint8';
}

/** NumPy-style broadcast of two shapes; throws naming both operands. */
export function broadcastShapes(a: Shape, b: Shape, what = 'broadcast'): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new ShapeError(`${what}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(`axis ${axis} out of range for rank ${rank}`);
  return a;
}
