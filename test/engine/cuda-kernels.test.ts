/**
 * Every node of every model the worker runs has a CUDA kernel in onnxruntime 1.30 for its operator, opset and
 * input types (models/engine/cuda-kernels.json), checked on the production-size graphs: the 1024-px generator,
 * IR-SE50, e4e and ViT-B/16 built exactly as `models build` builds them (weights are zeros here: which kernels run
 * depends on the graph, not on the values), plus the face-api nets. No GPU needed; see cuda-coverage.ts for why.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { onnx } from '../../models/engine/proto.js';
import {
  cudaCoverage,
  describeUncovered,
  viewOfGraph,
  viewOfModel,
  type Coverage,
} from '../../models/engine/cuda-coverage.js';
import {
  FULL_SIZES,
  arcfaceLayout,
  e4eLayout,
  farlLayout,
  generatorLayout,
} from '../../models/bundle/demo-weights.js';
import { makeTensor, type Tensor } from '../../models/checkpoint/tensor.js';
import type { SpecEntry } from '../../models/fixtures/spec.js';
import { GRAPH_BUILDERS, falcoWeightsFromMaps } from '../../models/falco/graphs.js';
import { buildFaceApiOnnx } from '../../models/faceapi/index.js';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { MODEL_FILES } from '../../models/falco/contract.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';

/** A full-size weight map with the layout's shapes; zero-filled pages cost no memory until written. */
function zeros(entries: SpecEntry[]): Map<string, Tensor> {
  return new Map(
    entries.map((e) => [
      e.key,
      makeTensor(
        'float32',
        e.shape,
        e.values ? Float32Array.from(e.values) : new Float32Array(e.shape.reduce((a, b) => a * b, 1)),
      ),
    ]),
  );
}

function expectCovered(c: Coverage): void {
  expect(describeUncovered(c.uncovered)).toBe('');
  expect(c.nodes).toBeGreaterThan(0);
}

describe('CUDA kernel coverage (onnxruntime 1.30)', () => {
  it('production-size step, targets, encoder, render and mapping: every node has a CUDA kernel', () => {
    const w = falcoWeightsFromMaps({
      generator: zeros(generatorLayout(FULL_SIZES)),
      arcface: zeros(arcfaceLayout(FULL_SIZES)),
      farl: zeros(farlLayout(FULL_SIZES)),
      e4e: zeros(e4eLayout(FULL_SIZES)),
    });
    const seen: Record<string, Coverage> = {};
    for (const [name, build] of Object.entries(GRAPH_BUILDERS)) {
      const g = build(w);
      seen[name] = cudaCoverage(viewOfGraph(g));
      expectCovered(seen[name]);
    }
    // Production size, not the demo's: the 1024-px generator's 18 W+ layers and the full IR-SE50/ViT-B/16 depth.
    expect(seen.step!.nodes).toBeGreaterThan(3000);
    expect(seen.step!.ops.ConvTranspose).toBeGreaterThan(0);
    expect(seen.step!.ops.LayerNormalization).toBeGreaterThanOrEqual(2 * 12); // ViT-B/16: 12 blocks × 2
    expect(Object.keys(seen).sort()).toEqual(Object.keys(MODEL_FILES).sort());
  }, 300_000);

  it('face-api detector, landmarks and recognizer nets: every node has a CUDA kernel', () => {
    for (const net of ['ssd', 'landmarks', 'recognition'] as const) {
      const m = onnx.ModelProto.decode(buildFaceApiOnnx(net).onnx);
      expectCovered(cudaCoverage(viewOfModel(m, net)));
    }
  });

  it('reads a bundle on disk the same way (saved models, external weights)', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'cuda-cov-')), 'demo');
    await buildDemoBundle({ outDir: dir, poolSize: 1 });
    for (const file of Object.values(MODEL_FILES)) {
      const c = cudaCoverage(viewOfModel(onnx.ModelProto.decode(readFileSync(join(dir, file))), file));
      expectCovered(c);
      expect(c.ops.Identity).toBeGreaterThan(0); // the outputs' Identity nodes are counted too
    }
  });

  it('finds nodes without a CUDA kernel: wrong input type (through a Cast), unknown op, old opset', () => {
    const g = new E.Graph('bad');
    const x = g.input('x', [1, 4]);
    const xi = g.node1('Cast', [x], [1, 4], 'int32', { to: 6 });
    const r = g.node1('Relu', [xi], [1, 4], 'int32'); // Relu's CUDA kernel takes floating types only
    g.node1('Det', [x], [], 'float32');
    g.output(r, 'y');
    const c = cudaCoverage(viewOfGraph(g));
    expect(c.uncovered.map((u) => [u.op, u.reason])).toEqual([
      [
        'Relu',
        expect.stringMatching(
          /input 0 \(.*\) is int32; the CUDA kernel's T takes bfloat16, double, float, float16/,
        ),
      ],
      [
        'Det',
        expect.stringMatching(
          /Det is not in models\/engine\/cuda-kernels.json: add its row from https:\/\/github.com\/microsoft\/onnxruntime\//,
        ),
      ],
    ]);
    // The same float graph at opset 8 would hit Relu's [6, 12] row; MaxPool at opset 8 has no int8 kernel.
    const old = cudaCoverage({ ...viewOfGraph(g), opset: 8 });
    expect(old.uncovered.some((u) => u.op === 'Relu')).toBe(true);
  });
});
