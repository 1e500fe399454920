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

  it('reports the provider it runs on and logs the fallback to CPU when CUDA is absent (auto)', async () => {
    const logs: string[] = [];
    const s = await E.Session.create(E.toBytes(smallConvNet()), {
      provider: 'auto',
      log: (m) => logs.push(m),
    });
    expect(s.provider).toBe(E.cudaAvailable() ? 'cuda' : 'cpu');
    expect(logs.join('\n')).toMatch(/session on (CPU|CUDA) \(FALCO_PROVIDER=auto\)/);
    if (!E.cudaAvailable())
      expect(logs[0]).toMatch(
        /CUDA execution provider not installed \(.*libonnxruntime_providers_cuda\.so missing\); falling back to CPU/,
      );
  });

  it.skipIf(E.cudaAvailable())(
    'forced cuda without the CUDA provider fails with a clear message',
    async () => {
      const logs: string[] = [];
      const err = await E.Session.create(E.toBytes(smallConvNet()), {
        provider: 'cuda',
        log: (m) => logs.push(m),
      }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(E.ProviderError);
      expect((err as Error).message).toMatch(
        /^FALCO_PROVIDER=cuda but the CUDA execution provider could not be used: .*The provider library .*libonnxruntime_providers_cuda\.so is not installed: install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12/,
      );
      expect(logs).toEqual([]); // no session was created, so none claims a provider
    },
  );

  it('FALCO_PROVIDER decides when the caller does not, and a bad value is refused', async () => {
    expect(E.providerFromEnv({})).toBe('auto');
    expect(E.providerFromEnv({ FALCO_PROVIDER: ' CUDA ' })).toBe('cuda');
    expect(() => E.providerFromEnv({ FALCO_PROVIDER: 'gpu' })).toThrow(
      /FALCO_PROVIDER must be cuda, cpu or auto, got "gpu"/,
    );
    const saved = process.env.FALCO_PROVIDER;
    try {
      process.env.FALCO_PROVIDER = 'cpu';
      const logs: string[] = [];
      const s = await E.Session.create(E.toBytes(smallConvNet()), { log: (m) => logs.push(m) });
      expect(s.provider).toBe('cpu');
      expect(logs).toEqual(['onnxruntime session on CPU (FALCO_PROVIDER=cpu)']); // no fallback: CPU was asked for
      if (!E.cudaAvailable()) {
        process.env.FALCO_PROVIDER = 'cuda';
        await expect(E.Session.create(E.toBytes(smallConvNet()))).rejects.toThrow(/^FALCO_PROVIDER=cuda but/);
      }
    } finally {
      if (saved === undefined) delete process.env.FALCO_PROVIDER;
      else process.env.FALCO_PROVIDER = saved;
    }
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
