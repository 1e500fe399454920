/**
 * Static check that every node of a model has a CUDA execution-provider kernel in onnxruntime for its
 * operator, opset and input types (the table is data: ./cuda-kernels.json, with its source).
 *
 * Why: onnxruntime silently places a node without a CUDA kernel on the CPU and copies its tensors between
 * device and host around it, at every run; inside the 50-step loop that would cost more than the GPU saves.
 * No GPU is needed to find such a node before deployment: the kernel registry is documented, and our graphs
 * carry static types. Types are propagated through the graph with the few ONNX typing rules our operators
 * need (the table's `output` field); an operator missing from the table is reported, never guessed.
 */
import table from './cuda-kernels.json' with { type: 'json' };
import type { OnnxT } from './proto.js';
import { type Graph, ONNX_DTYPE } from './graph.js';
import { OPSET } from './serialize.js';

interface KernelRange {
  opset: number[];
  inputs?: string[];
  types: Record<string, string[]>;
}
interface OpRow {
  inputs: string[];
  variadic?: boolean;
  output?: string | number;
  kernels: KernelRange[];
}

const OPS = table.ops as unknown as Record<string, OpRow>;
export const CUDA_KERNEL_SOURCE: string = table.source;

/** ONNX TensorProto.DataType → the type names of OperatorKernels.md. */
const TYPE_NAME: Record<number, string> = {
  1: 'float',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  9: 'bool',
  10: 'float16',
  11: 'double',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
};

export interface NodeView {
  opType: string;
  domain?: string | null;
  name?: string | null;
  input: string[];
  output: string[];
  attribute?: OnnxT.IAttributeProto[] | null;
}

/** What the check needs of a model: typed graph inputs and initializers, nodes in topological order, opset. */
export interface ModelView {
  name: string;
  opset: number;
  /** name → ONNX element type of graph inputs and initializers. */
  types: Map<string, number>;
  nodes: NodeView[];
}

export interface Uncovered {
  model: string;
  node: string;
  op: string;
  opset: number;
  inputTypes: string[];
  reason: string;
}

export interface Coverage {
  /** Nodes checked per operator. */
  ops: Record<string, number>;
  nodes: number;
  uncovered: Uncovered[];
}

/** A graph from our builder, checked without serialising its weights (production graphs hold ~1.5 GB). */
export function viewOfGraph(g: Graph): ModelView {
  const types = new Map<string, number>();
  for (const t of g.inputs) types.set(t.name, ONNX_DTYPE[t.dtype]);
  for (const i of g.initializers.values()) types.set(i.name, ONNX_DTYPE[i.dtype]);
  return {
    name: g.name,
    opset: OPSET,
    types,
    nodes: g.nodes.map((n) => ({
      opType: n.opType!,
      domain: n.domain ?? null,
      name: n.name ?? null,
      input: n.input ?? [],
      output: n.output ?? [],
      attribute: n.attribute ?? null,
    })),
  };
}

/** A decoded ModelProto (e.g. a bundle's .onnx file: its weights stay in the external .data file). */
export function viewOfModel(m: OnnxT.IModelProto, name = m.graph?.name ?? 'model'): ModelView {
  const types = new Map<string, number>();
  for (const v of m.graph?.input ?? []) types.set(v.name!, v.type?.tensorType?.elemType ?? 0);
  for (const i of m.graph?.initializer ?? []) types.set(i.name!, i.dataType ?? 0);
  const opset = Number(m.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
  return {
    name,
    opset,
    types,
    nodes: (m.graph?.node ?? []).map((n) => ({
      opType: n.opType!,
      domain: n.domain ?? null,
      name: n.name ?? null,
      input: n.input ?? [],
      output: n.output ?? [],
      attribute: n.attribute ?? null,
    })),
  };
}

function kernelFor(row: OpRow, opset: number): KernelRange | undefined {
  return row.kernels.find((k) => opset >= k.opset[0]! && (k.opset[1] === undefined || opset <= k.opset[1]));
}

/** Check every node; returns per-op counts and every node without a CUDA kernel (with the reason). */
export function cudaCoverage(model: ModelView): Coverage {
  const types = new Map(model.types);
  const ops: Record<string, number> = {};
  const uncovered: Uncovered[] = [];
  for (const n of model.nodes) {
    const node = n.name || n.output[0] || '?';
    ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    const inTypes = n.input.map((i) => (i ? (TYPE_NAME[types.get(i) ?? -1] ?? 'unknown') : ''));
    const fail = (reason: string) =>
      uncovered.push({
        model: model.name,
        node,
        op: n.opType,
        opset: model.opset,
        inputTypes: inTypes,
        reason,
      });
    const row = n.domain && n.domain !== 'ai.onnx' ? undefined : OPS[n.opType];
    let outType = types.get(n.input.find(Boolean) ?? '') ?? 0;
    if (!row) {
      fail(
        n.domain && n.domain !== 'ai.onnx'
          ? `domain ${n.domain} is not in the table`
          : `${n.opType} is not in models/engine/cuda-kernels.json: add its row from ${CUDA_KERNEL_SOURCE}`,
      );
    } else {
      const k = kernelFor(row, model.opset);
      if (!k) fail(`no CUDA kernel for ${n.opType} at opset ${model.opset}`);
      else {
        const sig = k.inputs ?? row.inputs;
        n.input.forEach((name, i) => {
          if (!name) return; // omitted optional input
          const constraint = sig[Math.min(i, sig.length - 1)];
          if (constraint === undefined || (i >= sig.length && !row.variadic)) {
            fail(`input ${i} is beyond the kernel's signature (${sig.join(', ')})`);
            return;
          }
          const allowed = k.types[constraint] ?? [constraint]; // a literal type, e.g. int64
          if (!allowed.includes(inTypes[i]!))
            fail(
              `input ${i} (${name}) is ${inTypes[i]}; the CUDA kernel's ${constraint} takes ${allowed.join(', ')}`,
            );
        });
      }
      if (row.output === 'bool') outType = 9;
      else if (row.output === 'int64') outType = 7;
      else if (row.output === 'attr:to')
        outType = Number(String(n.attribute?.find((a) => a.name === 'to')?.i ?? 0)); // a protobuf Long when decoded
      else if (typeof row.output === 'number') outType = types.get(n.input[row.output] ?? '') ?? 0;
    }
    for (const o of n.output) if (o) types.set(o, outType);
  }
  return { ops, nodes: model.nodes.length, uncovered };
}

/** One line per uncovered node (at most `max`), for errors and the CLI. */
export function describeUncovered(u: readonly Uncovered[], max = 20): string {
  const lines = u
    .slice(0, max)
    .map(
      (x) =>
        `${x.model}: ${x.op} "${x.node}" (opset ${x.opset}, inputs ${x.inputTypes.join('/')}): ${x.reason}`,
    );
  if (u.length > max) lines.push(`… and ${u.length - max} more`);
  return lines.join('\n');
}
