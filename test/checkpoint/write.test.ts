import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CheckpointWriteError,
  PyFloat,
  PyOrderedDict,
  ZipReader,
  crc32,
  crc32Table,
  getPath,
  isTuple,
  loadCheckpoint,
  makeTensor,
  numberToHalfBits,
  pyToJSON,
  saveCheckpoint,
  stateDict,
  tuple,
  type DType,
  type SaveValue,
  type Tensor,
} from '../../models/checkpoint/index.js';
import { fixturePath } from '../../models/fixtures/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'ckpt-write-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface ExpTensor {
  dtype: DType;
  shape: number[];
  values: (number | boolean)[];
}

/** Rebuild a tensor from its tiny_expected.json description. */
function fromExpected(e: ExpTensor): Tensor {
  switch (e.dtype) {
    case 'float32':
      return makeTensor('float32', e.shape, Float32Array.from(e.values as number[]));
    case 'float16':
      return makeTensor('float16', e.shape, Uint16Array.from(e.values as number[], numberToHalfBits));
    case 'int64':
      return makeTensor(
        'int64',
        e.shape,
        BigInt64Array.from(e.values as number[], (v) => BigInt(v)),
      );
    case 'bool':
      return makeTensor(
        'bool',
        e.shape,
        Uint8Array.from(e.values as boolean[], (v) => (v ? 1 : 0)),
      );
    default:
      throw new Error(`unexpected dtype ${e.dtype}`);
  }
}

describe('saveCheckpoint', () => {
  it('writes the tiny object so that it loads back exactly as tiny_expected.json', async () => {
    const exp = JSON.parse(readFileSync(fixturePath('checkpoint', 'tiny_expected.json'), 'utf8')) as {
      generator_smooth: Record<string, ExpTensor>;
      latent_avg: ExpTensor;
      opts: Record<string, SaveValue>;
    };
    const g = new PyOrderedDict();
    for (const [k, v] of Object.entries(exp.generator_smooth)) g.set(k, fromExpected(v));
    const opts = { ...exp.opts, pair: tuple(exp.opts['pair'] as number[]) };
    const p = join(tmp, 'tiny_written.pth');
    await saveCheckpoint(
      p,
      new Map<string, SaveValue>([
        ['generator_smooth', g as unknown as SaveValue],
        ['latent_avg', fromExpected(exp.latent_avg)],
        ['opts', opts],
      ]),
    );
    const back = await loadCheckpoint(p);
    expect(JSON.stringify(pyToJSON(back))).toBe(JSON.stringify(exp));
    expect(getPath(back, 'generator_smooth')).toBeInstanceOf(PyOrderedDict);
    expect(isTuple(getPath(back, 'opts', 'pair'))).toBe(true);
  });

  it('round-trips every dtype, shared tensors, nested containers and Python scalars', async () => {
    const shared = makeTensor('float32', [2, 2], Float32Array.from([1, 2, 3, 4]));
    const tensors: Record<string, Tensor> = {
      f32: makeTensor('float32', [2, 3], Float32Array.from([0.1, -2, 3.5, 1e-30, -0, Infinity])),
      f64: makeTensor('float64', [2], Float64Array.from([Math.PI, -1e300])),
      f16: makeTensor('float16', [2], Uint16Array.from([0x3c00, 0xfbff])),
      bf16: makeTensor('bfloat16', [1], Uint16Array.from([0x4049])),
      i64: makeTensor('int64', [3], BigInt64Array.from([-(2n ** 63n), 0n, 2n ** 63n - 1n])),
      i32: makeTensor('int32', [2], Int32Array.from([-5, 7])),
      i16: makeTensor('int16', [1], Int16Array.from([-300])),
      i8: makeTensor('int8', [1], Int8Array.from([-3])),
      u8: makeTensor('uint8', [2], Uint8Array.from([0, 255])),
      b: makeTensor('bool', [2], Uint8Array.from([1, 0])),
      scalar: makeTensor('float32', [], Float32Array.from([7])),
      empty: makeTensor('float32', [0, 3], new Float32Array(0)),
    };
    const value: SaveValue = {
      state_dict: { ...tensors, tied_a: shared, tied_b: shared },
      meta: new Map<string | number, SaveValue>([
        [0, 'int key'],
        ['big', 2n ** 70n],
        ['neg', -123456789012],
        ['small', -1],
        ['mid', 40000],
        ['float', new PyFloat(2)],
        ['frac', 0.25],
        ['list', [1, null, [true, false], tuple(['a', tuple([])])]],
        ['empty', {}],
        ['unicode', 'é✓😀'],
      ]),
    };
    const p = join(tmp, 'roundtrip.pth');
    await saveCheckpoint(p, value);
    const back = await loadCheckpoint(p);
    const sd = stateDict(back, 'state_dict.');
    for (const [k, t] of Object.entries(tensors)) {
      const r = sd.get(k)!;
      expect(r.dtype, k).toBe(t.dtype);
      expect(r.shape, k).toEqual(t.shape);
      expect(r.data, k).toEqual(t.data);
    }
    expect(Array.from(sd.get('tied_a')!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    // Written once as one storage, so both views alias the same buffer after loading (as in torch).
    expect(sd.get('tied_a')!.data.buffer).toBe(sd.get('tied_b')!.data.buffer);
    const meta = getPath(back, 'meta') as Map<unknown, unknown>;
    expect([...meta.keys()]).toEqual([
      0,
      'big',
      'neg',
      'small',
      'mid',
      'float',
      'frac',
      'list',
      'empty',
      'unicode',
    ]);
    expect(meta.get('big')).toBe(2n ** 70n);
    expect(meta.get('neg')).toBe(-123456789012);
    expect(meta.get('small')).toBe(-1);
    expect(meta.get('mid')).toBe(40000);
    expect(meta.get('float')).toBe(2);
    expect(meta.get('frac')).toBe(0.25);
    expect(pyToJSON(meta.get('list') as never)).toEqual([1, null, [true, false], ['a', []]]);
    expect(meta.get('unicode')).toBe('é✓😀');
  });

  it('lays the archive out like torch: 64-byte aligned storages, valid CRCs, version and byteorder', async () => {
    const p = join(tmp, 'layout.pth');
    await saveCheckpoint(p, {
      w: makeTensor('float32', [5], Float32Array.from([1, 2, 3, 4, 5])),
      v: makeTensor('int8', [3], Int8Array.from([1, 2, 3])),
    });
    const fh = await open(p, 'r');
    try {
      const zip = await ZipReader.open(fh, (await fh.stat()).size);
      expect([...zip.entries.keys()]).toEqual([
        'archive/data.pkl',
        'archive/byteorder',
        'archive/data/0',
        'archive/data/1',
        'archive/version',
      ]);
      for (const e of zip.entries.values()) {
        expect(e.method).toBe(0);
        expect((await zip.dataOffset(e)) % 64, e.name).toBe(0);
        expect(crc32(await zip.read(e)), e.name).toBe(e.crc32);
      }
      expect(new TextDecoder().decode(await zip.read(zip.entries.get('archive/version')!))).toBe('3\n');
      expect(new TextDecoder().decode(await zip.read(zip.entries.get('archive/byteorder')!))).toBe('little');
    } finally {
      await fh.close();
    }
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Table(check)).toBe(0xcbf43926);
    expect(crc32Table(check.subarray(4), crc32Table(check.subarray(0, 4)))).toBe(0xcbf43926);
  });

  it('reads ZIP64 archives (every size and offset in ZIP64 extra fields, ZIP64 end records)', async () => {
    const p = join(tmp, 'zip64.pth');
    const w = makeTensor('float32', [3], Float32Array.from([1, -2, 3]));
    await saveCheckpoint(p, { w, meta: 'm' }, { forceZip64: true, archiveName: 'z64' });
    const fh = await open(p, 'r');
    try {
      const zip = await ZipReader.open(fh, (await fh.stat()).size);
      expect(zip.entries.get('z64/data/0')!.size).toBe(12);
      expect((await zip.dataOffset(zip.entries.get('z64/data/0')!)) % 64).toBe(0);
    } finally {
      await fh.close();
    }
    const back = await loadCheckpoint(p);
    expect(Array.from(stateDict(back).get('w')!.data as Float32Array)).toEqual([1, -2, 3]);
    expect(getPath(back, 'meta')).toBe('m');
  });

  it('rejects values it cannot write', async () => {
    const p = join(tmp, 'bad.pth');
    await expect(saveCheckpoint(p, { f: (() => 1) as unknown as SaveValue })).rejects.toThrow(
      CheckpointWriteError,
    );
    const cyc: Record<string, SaveValue> = {};
    (cyc as Record<string, unknown>)['self'] = cyc;
    await expect(saveCheckpoint(p, cyc)).rejects.toThrow(/appears twice or contains itself/);
    await expect(saveCheckpoint(p, { d: new Date() as unknown as SaveValue })).rejects.toThrow(
      /cannot pickle Date at d/,
    );
  });
});
