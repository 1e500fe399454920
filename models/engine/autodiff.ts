/**
 * Reverse-mode differentiation over the graph's tape.
 *
 * `grad(y, wrt)` adds backward nodes to the same graph and returns dy/dwrt (same shapes as wrt). Only
 * tensors that both depend on `wrt` and feed `y` get cotangents, so frozen weights and constant
 * branches cost nothing in the backward pass.
 */
import { ShapeError, type Tensor, shapeStr } from './graph.js';
import { add } from './ops/elementwise.js';
import { fill } from './ops/shape.js';

export function grad(y: Tensor, wrt: Tensor[], seed?: Tensor): Tensor[] {
  const g = y.graph;
  if (!seed && y.size !== 1) throw new ShapeError(`grad: ${y} is not a scalar; pass a seed cotangent`);
  if (seed && seed.shape.join() !== y.shape.join())
    throw new ShapeError(`grad: seed ${shapeStr(seed.shape)} does not match ${y}`);
  const tapeLen = g.tape.length;

  // Forward reachability from wrt: which tensors depend on the variables.
  const depends = new Set(wrt.map((t) => t.name));
  for (let i = 0; i < tapeLen; i++) {
    const e = g.tape[i]!;
    if (e.inputs.some((t) => depends.has(t.name))) for (const o of e.outputs) depends.add(o.name);
  }
  if (!depends.has(y.name))
    throw new ShapeError(`grad: ${y} does not depend on ${wrt.map(String).join(', ')}`);

  const cot = new Map<string, Tensor>();
  cot.set(y.name, seed ?? fill(g, y.shape, 1));
  const accumulate = (t: Tensor, gt: Tensor): void => {
    if (gt.shape.join() !== t.shape.join())
      throw new ShapeError(`grad: cotangent ${shapeStr(gt.shape)} for ${t} has the wrong shape`);
    const prev = cot.get(t.name);
    cot.set(t.name, prev ? add(prev, gt) : gt);
  };

  for (let i = tapeLen - 1; i >= 0; i--) {
    const e = g.tape[i]!;
    if (!e.outputs.some((o) => cot.has(o.name))) continue;
    const needs = e.inputs.map((t) => depends.has(t.name));
    if (!needs.some(Boolean)) continue;
    const gys = e.outputs.map((o) => cot.get(o.name) ?? fill(g, o.shape, 0));
    const gxs = e.op.vjp({ g, inputs: e.inputs, outputs: e.outputs, attrs: e.attrs, needs }, gys);
    e.inputs.forEach((t, k) => {
      const gx = gxs[k];
      if (needs[k] && gx) accumulate(t, gx);
    });
  }
  return wrt.map((w) => cot.get(w.name) ?? fill(g, w.shape, 0));
}
