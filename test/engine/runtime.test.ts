import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { rand } from '../helpers/gradcheck.js';

function smallConvNet() {
  const g = new E.Graph('net');
  const x = g.input('image', [1, 3, 16, 16]);
  const w = g.constant(rand(32 * 3 * 9, 1), [32, 3, 3, 3], 'conv.weight');
  const y = E.reduceSum(E.mul(E.conv2d(x, w, undefined, { padding: 1 }), 1));
  g.output(y, 'y');
  return g;
}

describe('runtime', () => {
  it('names the tensor on a wrong shape, a wrong dtype, a missing or an unknown input', async () => {
    const s = await E.Session.create(E.toBytes(smallConvNet()), { provider: 'cpu' });
    await expect(s.run({ image: new Float32Array(10) })).rejects.toThrow(
      /input "image": expected shape \[1, 3, 16, 16\]/,
    );
    await expect(s.run({ image: new Int32Array(768) })).rejects.toThrow(
      /input "image": expected float32, got Int32Array/,
    );
    await expect(s.run({})).rejects.toThrow(/missing input "image"/);
    await expect(s.run({ image: new Float32Array(768), extra: new Float32Array(1) })).rejects.toThrow(
      /unknown input "extra"/,
    );
  });

  it('reports the provider it runs on and falls back to CPU when CUDA is absent', async () => {
    const logs: string[] = [];
    const s = await E.Session.create(E.toBytes(smallConvNet()), {
      provider: 'auto',
      log: (m) => logs.push(m),
    });
    expect(s.provider).toBe(E.cudaAvailable() ? 'cuda' : 'cpu');
    expect(logs.join('\n')).toMatch(/session on (CPU|CUDA)/);
  });

  it('build-time shape errors name the tensors', () => {
    const g = new E.Graph();
    const a = g.input('a', [2, 3]);
    const b = g.input('b', [4, 5]);
    expect(() => E.matmul(a, b)).toThrow(/inner dims differ: a\[2, 3\]:float32 @ b\[4, 5\]/);
    expect(() => E.add(a, b)).toThrow(/\[2, 3\] and \[4, 5\] do not broadcast/);
  });

  it('saves weights as ONNX external data and runs identically from disk', async () => {
    const g = smallConvNet();
    const dir = mkdtempSync(join(tmpdir(), 'engine-'));
    const path = join(dir, 'net.onnx');
    const { dataBytes } = E.save(g, path);
    expect(dataBytes).toBeGreaterThanOrEqual(32 * 3 * 9 * 4);
    expect(statSync(path).size).toBeLessThan(4096); // the weights are not inside the protobuf
    const image = rand(768, 5);
    const fromDisk = await (await E.Session.create(path, { provider: 'cpu' })).run({ image });
    const inMemory = await (await E.Session.create(E.toBytes(g), { provider: 'cpu' })).run({ image });
    expect(fromDisk.y!.data[0]).toBe(inMemory.y!.data[0]);
  });
});
