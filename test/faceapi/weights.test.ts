import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hwioToOihw, depthwiseToOihw } from '../../models/faceapi/layers.js';
import { loadTfjsWeights, WeightFormatError, WeightMap } from '../../models/faceapi/weights.js';
import { FACEAPI_MODEL_DIR } from './oracle.js';

function writeModel(weights: unknown[], shard: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'tfjs-w-'));
  writeFileSync(join(dir, 'm.bin'), shard);
  writeFileSync(join(dir, 'm.json'), JSON.stringify([{ paths: ['m.bin'], weights }]));
  return join(dir, 'm.json');
}

describe('tfjs weight manifests', () => {
  it('dequantizes uint8/uint16 (q·scale+min), float16, int32 (rounded) and reads raw float32', () => {
    const raw = Buffer.alloc(8);
    raw.writeFloatLE(1.5, 0);
    raw.writeFloatLE(-2.25, 4);
    const u16 = Buffer.alloc(4);
    u16.writeUInt16LE(1000, 0);
    u16.writeUInt16LE(65535, 2);
    const f16 = Buffer.alloc(4);
    f16.writeUInt16LE(0x3c00, 0); // 1.0
    f16.writeUInt16LE(0xc100, 2); // -2.5
    const shard = Buffer.concat([Buffer.from([0, 10, 255]), u16, f16, Buffer.from([3]), raw]);
    const path = writeModel(
      [
        { name: 'a', shape: [3], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: -1 } },
        { name: 'b', shape: [2], dtype: 'float32', quantization: { dtype: 'uint16', scale: 0.001, min: 0 } },
        { name: 'c', shape: [2], dtype: 'float32', quantization: { dtype: 'float16' } },
        { name: 'd', shape: [], dtype: 'int32', quantization: { dtype: 'uint8', scale: 0.4, min: 1 } },
        { name: 'e', shape: [1, 2], dtype: 'float32' },
      ],
      shard,
    );
    const w = loadTfjsWeights(path);
    expect(Array.from(w.get('a')!.data)).toEqual([-1, 4, 126.5]);
    expect(w.get('b')!.data[0]).toBeCloseTo(1, 6);
    expect(w.get('b')!.data[1]).toBeCloseTo(65.535, 4);
    expect(Array.from(w.get('c')!.data)).toEqual([1, -2.5]);
    expect(w.get('d')!.data).toBeInstanceOf(Int32Array);
    expect(Array.from(w.get('d')!.data)).toEqual([2]); // round(3·0.4 + 1) = round(2.2)
    expect(Array.from(w.get('e')!.data)).toEqual([1.5, -2.25]);
  });

  it('refuses short shards, leftover bytes, unknown quantization and missing/misshaped weights', () => {
    const w = [
      { name: 'a', shape: [4], dtype: 'float32', quantization: { dtype: 'uint8', scale: 1, min: 0 } },
    ];
    expect(() => loadTfjsWeights(writeModel(w, Buffer.alloc(3)))).toThrow(/ends early/);
    expect(() => loadTfjsWeights(writeModel(w, Buffer.alloc(5)))).toThrow(/shards hold 5/);
    expect(() =>
      loadTfjsWeights(writeModel([{ ...w[0], quantization: { dtype: 'int4' } }], Buffer.alloc(4))),
    ).toThrow(WeightFormatError);
    const map = new WeightMap(loadTfjsWeights(writeModel(w, Buffer.alloc(4))), 'test');
    expect(() => map.get('nope')).toThrow(/missing weight nope/);
    expect(() => map.get('a', [2, 2])).toThrow(/has shape \[4\], expected \[2,2\]/);
  });

  it('loads the three face-api models with the expected tensors', () => {
    const ssd = WeightMap.load(join(FACEAPI_MODEL_DIR, 'ssd_mobilenetv1_model-weights_manifest.json'));
    expect(ssd.get('Output/extra_dim').shape).toEqual([1, 5118, 4]);
    expect(ssd.get('MobilenetV1/Conv2d_13_pointwise/weights').shape).toEqual([1, 1, 1024, 1024]);
    const lm = WeightMap.load(join(FACEAPI_MODEL_DIR, 'face_landmark_68_model-weights_manifest.json'));
    expect(lm.get('fc/weights').shape).toEqual([256, 136]);
    const rec = WeightMap.load(join(FACEAPI_MODEL_DIR, 'face_recognition_model-weights_manifest.json'));
    expect(rec.get('fc').shape).toEqual([256, 128]);
    // Quantized values stay inside [min, min + 255·scale].
    const b = rec.get('conv32_down/scale/weights').data;
    expect(Math.min(...b)).toBeGreaterThanOrEqual(5.788674831390381 - 1e-6);
  });

  it('converts tfjs HWIO/depthwise kernels to ONNX OIHW', () => {
    // kh=1, kw=2, in=2, out=3: value encodes (x, i, o).
    const hwio = new Float32Array(12);
    for (let x = 0; x < 2; x++)
      for (let i = 0; i < 2; i++)
        for (let o = 0; o < 3; o++) hwio[(x * 2 + i) * 3 + o] = 100 * x + 10 * i + o;
    const oihw = hwioToOihw(hwio, [1, 2, 2, 3]);
    for (let o = 0; o < 3; o++)
      for (let i = 0; i < 2; i++)
        for (let x = 0; x < 2; x++) expect(oihw[(o * 2 + i) * 2 + x]).toBe(100 * x + 10 * i + o);
    const dw = depthwiseToOihw(Float32Array.from([1, 2, 3, 4]), [1, 2, 2, 1]); // (x, c)
    expect(Array.from(dw)).toEqual([1, 3, 2, 4]);
  });
});
