/**
 * The arithmetic a graph asks for: floating-point operations of its dense ops (Conv, ConvTranspose, MatMul,
 * Gemm) over the nodes that are serialised (serialize.ts `live`), from the static shapes the builder knows.
 * Elementwise ops, reductions and normalisations are left out: they are memory-bound and a few percent of
 * the FLOPs, so "dense FLOPs / time" is the figure to hold against a machine's measured GEMM rate.
 * A multiply-add counts as 2 FLOPs (the convention of vendors' peak figures and of PyTorch's profilers).
 */
import { type Graph, numel } from './graph.js';
import { live } from './serialize.js';

export interface GraphCost {
  /** Dense FLOPs per run, by op type. */
  byOp: Record<string, number>;
  total: number;
}

function intsAttr(node: { attribute?: Array<{ name?: string | null; i?: unknown }> | null }, name: string) {
  const a = node.attribute?.find((x) => x.name === name);
  return a ? Number(a.i) : undefined;
}

export function denseFlops(g: Graph): GraphCost {
  const shape = (name: string): readonly number[] => {
    const t = g.tensors.get(name);
    if (!t) throw new Error(`cost: no shape for tensor ${name}`);
    return t.shape;
  };
  const byOp: Record<string, number> = {};
  const add = (op: string, f: number) => (byOp[op] = (byOp[op] ?? 0) + f);
  for (const n of live(g).nodes) {
    const ins = n.input ?? [];
    const out = n.output?.[0];
    switch (n.opType) {
      case 'Conv': {
        // Each output element: Cin/groups × kh × kw multiply-adds.
        const [, cinG, kh, kw] = shape(ins[1]!) as number[];
        add('Conv', 2 * numel(shape(out!)) * cinG! * kh! * kw!);
        break;
      }
      case 'ConvTranspose': {
        // Each input element scatters into Cout/groups × kh × kw outputs.
        const [, coutG, kh, kw] = shape(ins[1]!) as number[];
        add('ConvTranspose', 2 * numel(shape(ins[0]!)) * coutG! * kh! * kw!);
        break;
      }
      case 'MatMul': {
        const a = shape(ins[0]!);
        add('MatMul', 2 * numel(shape(out!)) * a.at(-1)!);
        break;
      }
      case 'Gemm': {
        const a = shape(ins[0]!);
        const k = intsAttr(n, 'transA') ? a[0]! : a[1]!;
        add('Gemm', 2 * numel(shape(out!)) * k);
        break;
      }
    }
  }
  return { byOp, total: Object.values(byOp).reduce((x, y) => x + y, 0) };
}
