/**
 * Graph → ONNX ModelProto (via the onnx-proto protobuf bindings). Dead nodes and unused initializers
 * are pruned from the requested outputs. Large models keep their weights in an external data file next
 * to the .onnx (ONNX external data), which keeps the protobuf far below its 2 GB limit and lets
 * onnxruntime map the weights instead of copying a giant protobuf buffer.
 */
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { type OnnxT, onnx } from './proto.js';
import { type Graph, type Initializer, ONNX_DTYPE, type Tensor } from './graph.js';

export const OPSET = 17;

function valueInfo(t: Tensor): OnnxT.IValueInfoProto {
  return {
    name: t.name,
    type: {
      tensorType: { elemType: ONNX_DTYPE[t.dtype], shape: { dim: t.shape.map((d) => ({ dimValue: d })) } },
    },
  };
}

const bytesOf = (init: Initializer): Uint8Array =>
  new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);

/** Nodes and initializers needed for the graph's outputs, in emission (= topological) order. */
export function live(g: Graph): { nodes: OnnxT.INodeProto[]; inits: Initializer[] } {
  const needed = new Set(g.outputs.map((t) => t.name));
  const keep: boolean[] = new Array(g.nodes.length).fill(false);
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (n.output!.some((o) => needed.has(o))) {
      keep[i] = true;
      for (const inp of n.input!) if (inp) needed.add(inp);
    }
  }
  const nodes = g.nodes.filter((_, i) => keep[i]);
  const inits = [...g.initializers.values()].filter((t) => needed.has(t.name));
  return { nodes, inits };
}

export interface SaveOptions {
  /** Initializers at least this many bytes go to the external data file (default 1 KiB). */
  externalThreshold?: number;
}

function model(g: Graph, initializer: OnnxT.ITensorProto[], nodes: OnnxT.INodeProto[]): OnnxT.IModelProto {
  const inputs = g.inputs;
  return {
    irVersion: 8,
    producerName: 'falco-engine',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: g.name,
      node: nodes,
      initializer,
      input: inputs.map(valueInfo),
      output: g.outputs.map(valueInfo),
    },
  };
}

/** Serialise with every weight inline (small models, tests). */
export function toBytes(g: Graph): Uint8Array {
  const { nodes, inits } = live(g);
  const initializer = inits.map((t) => ({
    name: t.name,
    dataType: ONNX_DTYPE[t.dtype],
    dims: t.dims,
    rawData: bytesOf(t),
  }));
  return onnx.ModelProto.encode(model(g, initializer, nodes)).finish();
}

/** Write `path` (+ `path.data` for large weights). Returns the byte counts written. */
export function save(
  g: Graph,
  path: string,
  opts: SaveOptions = {},
): { modelBytes: number; dataBytes: number } {
  const threshold = opts.externalThreshold ?? 1024;
  const { nodes, inits } = live(g);
  const dataPath = `${path}.data`;
  const fd = openSync(dataPath, 'w');
  let offset = 0;
  const initializer: OnnxT.ITensorProto[] = [];
  try {
    for (const t of inits) {
      const bytes = bytesOf(t);
      if (bytes.byteLength < threshold) {
        initializer.push({ name: t.name, dataType: ONNX_DTYPE[t.dtype], dims: t.dims, rawData: bytes });
        continue;
      }
      // 64-byte alignment keeps every tensor aligned for SIMD loads when the file is memory-mapped.
      const pad = (64 - (offset % 64)) % 64;
      if (pad) writeSync(fd, new Uint8Array(pad));
      offset += pad;
      writeSync(fd, bytes);
      initializer.push({
        name: t.name,
        dataType: ONNX_DTYPE[t.dtype],
        dims: t.dims,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: basename(dataPath) },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.byteLength) },
        ],
      });
      offset += bytes.byteLength;
    }
  } finally {
    closeSync(fd);
  }
  const buf = onnx.ModelProto.encode(model(g, initializer, nodes)).finish();
  writeFileSync(path, buf);
  return { modelBytes: buf.byteLength, dataBytes: offset };
}
