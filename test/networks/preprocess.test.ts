import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as E from '../../models/engine/index.js';
import { fixturesDir } from '../../models/fixtures/paths.js';
import {
  PreprocessError,
  centerCropStart,
  farl224,
  id112,
  id112Matrices,
  resizedSize,
} from '../../models/networks/preprocess.js';
import handler from '../../models/parity/kinds/preprocess.js';
import type { ParityCase } from '../../models/parity/types.js';

const dir = fixturesDir();
const cases = (JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as { cases: ParityCase[] }).cases;

describe('FALCO preprocessing parity (torchvision goldens)', () => {
  for (const name of ['preprocess_r64', 'preprocess_r1024']) {
    it(`${name}: id112 and farl224`, async () => {
      const c = cases.find((x) => x.name === name)!;
      const checks = await handler(c, { dir, log: () => {} });
      expect(checks.map((x) => x.name).sort()).toEqual(['farl224', 'id112']);
      for (const x of checks) {
        expect(x.pass, `${x.name} ${JSON.stringify(x.metrics)}`).toBe(true);
        // float32-exact index/weight arithmetic: well below the 1e-4 bar.
        expect(x.metrics['relMaxErr']).toBeLessThan(1e-6);
      }
    });
  }
});

describe('preprocess helpers', () => {
  it('torchvision size and crop rules', () => {
    expect(resizedSize(1024, 1024, 256)).toEqual([256, 256]);
    expect(resizedSize(300, 200, 224)).toEqual([336, 224]);
    expect(resizedSize(200, 301, 224)).toEqual([224, 337]);
    // Python round(): half to even.
    expect(centerCropStart(257, 256)).toBe(0);
    expect(centerCropStart(259, 256)).toBe(2);
    expect(centerCropStart(336, 224)).toBe(56);
    expect(() => centerCropStart(100, 224)).toThrow(PreprocessError);
  });

  it('id112 is one matrix per axis whose rows sum to 1 (an average of the input)', () => {
    const [rows, cols] = id112Matrices(1024, 1024);
    expect([rows.out, rows.in, cols.out, cols.in]).toEqual([112, 1024, 112, 1024]);
    for (let i = 0; i < 112; i++) {
      let s = 0;
      for (let j = 0; j < 1024; j++) s += rows.data[i * 1024 + j]!;
      expect(s).toBeCloseTo(1, 5);
    }
    const g = new E.Graph('p');
    const x = g.input('x', [1, 3, 1024, 1024]);
    const y = id112(x);
    expect(y.shape).toEqual([1, 3, 112, 112]);
    // Two MatMuls, no intermediate 256×256 image.
    expect(g.nodes.filter((n) => n.opType === 'MatMul').length).toBe(2);
  });

  it('is differentiable and rejects non-RGB input', async () => {
    const g = new E.Graph('p');
    const x = g.input('x', [1, 3, 64, 64]);
    const loss = E.reduceSum(farl224(x));
    g.output(E.grad(loss, [x])[0]!, 'dx');
    const s = await E.Session.create(E.toBytes(g), { provider: 'cpu' });
    const dx = (await s.run({ x: new Float32Array(3 * 64 * 64) }))['dx']!;
    await s.release();
    // Each output pixel is a normalised average: total gradient mass = number of outputs.
    const total = dx.data.reduce((a, b) => a + b, 0);
    expect(total).toBeCloseTo(3 * 224 * 224, 0);
    const g2 = new E.Graph('q');
    expect(() => id112(g2.input('x', [1, 1, 64, 64]))).toThrow(PreprocessError);
  });
});
