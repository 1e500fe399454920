import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CheckpointFormatError,
  PyOrderedDict,
  SkippedTensor,
  TensorFormatError,
  UnsupportedClassError,
  UnsupportedOpcodeError,
  ZipWriter,
  getPath,
  halfBitsToNumber,
  isTensor,
  isTuple,
  loadCheckpoint,
  loadCheckpointWithInfo,
  numberToHalfBits,
  pyToJSON,
  stateDict,
  toFloat32,
  type Tensor,
} from '../../models/checkpoint/index.js';
import { fixturePath } from '../../models/fixtures/paths.js';

const ZIP = fixturePath('checkpoint', 'tiny_zip.pth');
const LEGACY = fixturePath('checkpoint', 'tiny_legacy.pth');
const expected = JSON.parse(readFileSync(fixturePath('checkpoint', 'tiny_expected.json'), 'utf8')) as unknown;

const tmp = mkdtempSync(join(tmpdir(), 'ckpt-read-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A zip archive shaped like torch.save output but with our own data.pkl bytes. */
async function zipWithPickle(
  name: string,
  pkl: number[] | Uint8Array,
  storages: Record<string, Uint8Array> = {},
): Promise<string> {
  const p = join(tmp, name);
  const fh = await open(p, 'w');
  const zip = new ZipWriter(fh);
  await zip.add('archive/data.pkl', Uint8Array.from(pkl));
  for (const [k, v] of Object.entries(storages)) await zip.add(`archive/data/${k}`, v);
  await zip.add('archive/version', new TextEncoder().encode('3\n'));
  await zip.finish();
  await fh.close();
  return p;
}

const asc = (s: string): number[] => [...new TextEncoder().encode(s)];

describe('loadCheckpoint on the tiny fixtures', () => {
  for (const [file, format] of [
    [ZIP, 'zip'],
    [LEGACY, 'legacy'],
  ] as const) {
    it(`${format}: matches tiny_expected.json exactly`, async () => {
      const r = await loadCheckpointWithInfo(file);
      expect(r.format).toBe(format);
      // pyToJSON keeps dict order, dtype, shape and row-major view values: compare everything.
      expect(pyToJSON(r.value)).toEqual(expected);
      expect(JSON.stringify(pyToJSON(r.value))).toBe(JSON.stringify(expected));
    });

    it(`${format}: keeps Python types and dtypes`, async () => {
      const obj = await loadCheckpoint(file);
      const g = getPath(obj, 'generator_smooth');
      expect(g).toBeInstanceOf(PyOrderedDict);
      const sd = stateDict(obj, 'generator_smooth.');
      expect([...sd.keys()]).toEqual([
        'conv.weight',
        'conv.bias',
        'scalar',
        'transposed',
        'view_a',
        'view_b',
        'half',
        'long',
        'bool',
      ]);
      const w = sd.get('conv.weight')!;
      expect(w.data).toBeInstanceOf(Float32Array);
      expect(w.shape).toEqual([2, 3, 3, 3]);
      expect(sd.get('scalar')!.shape).toEqual([]);
      expect(Array.from(sd.get('scalar')!.data as Float32Array)).toEqual([3.5]);
      const half = sd.get('half')!;
      expect(half.dtype).toBe('float16');
      expect(half.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(toFloat32(half))).toEqual([1.5, -2.25, 0.0009765625]);
      const long = sd.get('long')!;
      expect(long.data).toBeInstanceOf(BigInt64Array);
      expect(Array.from(long.data as BigInt64Array)).toEqual([1n, -2n, 3n, 40000000000n]);
      // transposed: storage 0..23 laid out [4,6], viewed as its transpose [6,4] (stride [1,6]).
      const tr = sd.get('transposed')!;
      expect(tr.shape).toEqual([6, 4]);
      expect(tr.data[1]).toBe(-0.25);
      expect(tr.data[4]).toBe(-0.875);
      const opts = getPath(obj, 'opts');
      expect(isTuple(getPath(opts, 'pair'))).toBe(true);
      expect(getPath(opts, 'flags')).toEqual([true, null, 'x']);
      expect(getPath(opts, 'lr')).toBe(0.0001);
      expect(stateDict(obj).has('latent_avg')).toBe(true);
    });
  }

  it('select: reads only the chosen tensors and marks the rest as skipped', async () => {
    const seen: string[] = [];
    const obj = await loadCheckpoint(ZIP, {
      select: (p) => {
        seen.push(p);
        return p === 'latent_avg';
      },
    });
    expect(seen).toContain('generator_smooth.conv.weight');
    expect(isTensor(getPath(obj, 'latent_avg'))).toBe(true);
    const skipped = getPath(obj, 'generator_smooth', 'view_b');
    expect(skipped).toBeInstanceOf(SkippedTensor);
    expect((skipped as SkippedTensor).shape).toEqual([2, 3]);
    expect([...stateDict(obj).keys()]).toEqual(['latent_avg']);
  });
});

describe('float16 conversion', () => {
  it('half bits → number → half bits round-trips every non-NaN pattern', () => {
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const x = halfBitsToNumber(h);
      if (!Number.isNaN(x) && numberToHalfBits(x) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
    expect(halfBitsToNumber(0x7e00)).toBeNaN();
  });
  it('rounds to nearest even and saturates to infinity', () => {
    expect(numberToHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(numberToHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(numberToHalfBits(65520)).toBe(0x7c00);
    expect(numberToHalfBits(2 ** -25)).toBe(0); // tie at the smallest subnormal → even (0)
    expect(numberToHalfBits(-(2 ** -24))).toBe(0x8001);
  });
  it('toFloat32 converts bfloat16 and int64 too', () => {
    const bf: Tensor = { dtype: 'bfloat16', shape: [2], data: Uint16Array.from([0x3fc0, 0xc000]) };
    expect(Array.from(toFloat32(bf))).toEqual([1.5, -2]);
    const l: Tensor = { dtype: 'int64', shape: [2], data: BigInt64Array.from([5n, -7n]) };
    expect(Array.from(toFloat32(l))).toEqual([5, -7]);
  });
});

describe('typed errors on bad input', () => {
  it('truncated zip checkpoint', async () => {
    const b = readFileSync(ZIP);
    const p = join(tmp, 'trunc.pth');
    writeFileSync(p, b.subarray(0, Math.floor(b.length / 2)));
    await expect(loadCheckpoint(p)).rejects.toThrow(CheckpointFormatError);
    await expect(loadCheckpoint(p)).rejects.toThrow(/truncated/);
  });

  it('truncated legacy checkpoint (inside the storages and inside the pickle)', async () => {
    const b = readFileSync(LEGACY);
    const p1 = join(tmp, 'trunc_legacy1.pth');
    writeFileSync(p1, b.subarray(0, b.length - 3));
    await expect(loadCheckpoint(p1)).rejects.toThrow(CheckpointFormatError);
    await expect(loadCheckpoint(p1)).rejects.toThrow(/truncated: storage/);
    const p2 = join(tmp, 'trunc_legacy2.pth');
    writeFileSync(p2, b.subarray(0, 600));
    await expect(loadCheckpoint(p2)).rejects.toThrow(/truncated.*BINUNICODE|truncated.*opcode/);
  });

  it('not a checkpoint', async () => {
    const p = join(tmp, 'text.pth');
    writeFileSync(p, 'hello world');
    await expect(loadCheckpoint(p)).rejects.toThrow(/not a PyTorch checkpoint/);
    await expect(loadCheckpoint(join(tmp, 'missing.pth'))).rejects.toThrow(CheckpointFormatError);
  });

  it('unknown / unsupported pickle opcodes name the opcode', async () => {
    const p1 = await zipWithPickle('op_ff.pth', [0x80, 2, 0xff]);
    await expect(loadCheckpoint(p1)).rejects.toThrow(UnsupportedOpcodeError);
    await expect(loadCheckpoint(p1)).rejects.toThrow(/opcode UNKNOWN \(0xff\) at offset 2/);
    const p2 = await zipWithPickle('op_ext1.pth', [0x80, 2, 0x82, 1, 0x2e]);
    await expect(loadCheckpoint(p2)).rejects.toThrow(/opcode EXT1 \(0x82\)/);
    const p3 = await zipWithPickle('op_inst.pth', [0x28, 0x69, ...asc('os\nsystem\n'), 0x2e]);
    await expect(loadCheckpoint(p3)).rejects.toThrow(/opcode INST/);
  });

  it('unknown classes name the class (GLOBAL and STACK_GLOBAL)', async () => {
    const p1 = await zipWithPickle('cls.pth', [0x80, 2, 0x63, ...asc('os\nsystem\n'), 0x29, 0x52, 0x2e]);
    await expect(loadCheckpoint(p1)).rejects.toThrow(UnsupportedClassError);
    await expect(loadCheckpoint(p1)).rejects.toThrow(/os\.system/);
    const p2 = await zipWithPickle('cls4.pth', [
      0x80,
      4,
      0x8c,
      5,
      ...asc('numpy'),
      0x8c,
      7,
      ...asc('ndarray'),
      0x93,
      0x2e,
    ]);
    await expect(loadCheckpoint(p2)).rejects.toThrow(/numpy\.ndarray/);
    // ...unless the caller opts into opaque objects.
    const v = await loadCheckpoint(p2, { unknownClasses: 'opaque' });
    expect(v).toMatchObject({ module: 'numpy', qualname: 'ndarray' });
  });

  it('a tensor view outside its storage is rejected, not read out of bounds', async () => {
    // _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', 4), offset 2, size (3,), stride (1,), False, OrderedDict())
    const pkl = [
      0x80,
      2,
      0x63,
      ...asc('torch._utils\n_rebuild_tensor_v2\n'),
      0x28,
      0x28,
      0x8c,
      7,
      ...asc('storage'),
      0x63,
      ...asc('torch\nFloatStorage\n'),
      0x8c,
      1,
      ...asc('0'),
      0x8c,
      3,
      ...asc('cpu'),
      0x4b,
      4,
      0x74,
      0x51,
      0x4b,
      2,
      0x4b,
      3,
      0x85,
      0x4b,
      1,
      0x85,
      0x89,
      0x63,
      ...asc('collections\nOrderedDict\n'),
      0x29,
      0x52,
      0x74,
      0x52,
      0x2e,
    ];
    const p = await zipWithPickle('oob.pth', pkl, { '0': new Uint8Array(16) });
    await expect(loadCheckpoint(p)).rejects.toThrow(TensorFormatError);
    await expect(loadCheckpoint(p)).rejects.toThrow(/reaches element 4 of storage 0 which has 4/);
    const q = await zipWithPickle('missing_storage.pth', pkl);
    await expect(loadCheckpoint(q)).rejects.toThrow(/archive\/data\/0 is missing/);
  });

  it('malformed pickles give PickleFormatError-style messages', async () => {
    const p = await zipWithPickle('underflow.pth', [0x80, 2, 0x73, 0x2e]);
    await expect(loadCheckpoint(p)).rejects.toThrow(/stack underflow at SETITEM/);
    const q = await zipWithPickle('memo.pth', [0x80, 2, 0x68, 7, 0x2e]);
    await expect(loadCheckpoint(q)).rejects.toThrow(/memo key 7 not found/);
  });
});

describe('training-checkpoint classes', () => {
  // Small pickle assembler: strings become SHORT_BINUNICODE, numbers BININT1/BINFLOAT.
  const op = {
    global: (m: string, n: string): number[] => [0x63, ...asc(`${m}\n${n}\n`)],
    str: (s: string): number[] => {
      const b = asc(s);
      return [0x8c, b.length, ...b];
    },
    int: (n: number): number[] => [0x4b, n],
    float: (x: number): number[] => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, x, false);
      return [0x47, ...b];
    },
  };
  const bytesF8 = (x: number): string => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, true);
    return String.fromCharCode(...b);
  };

  it('numpy scalars, argparse.Namespace, torch.Size/device, Parameter, OrderedDict._metadata', async () => {
    const pkl = [
      0x80,
      2,
      0x7d,
      0x28,
      // 'best_val_loss': numpy.core.multiarray.scalar(numpy.dtype('f8', False, True) BUILD state, _codecs.encode(bytes, 'latin1'))
      ...op.str('best_val_loss'),
      ...op.global('numpy.core.multiarray', 'scalar'),
      ...op.global('numpy', 'dtype'),
      ...op.str('f8'),
      0x89,
      0x88,
      0x87,
      0x52,
      0x28,
      ...op.int(3),
      ...op.str('<'),
      0x4e,
      0x4e,
      0x4e,
      0x4a,
      0xff,
      0xff,
      0xff,
      0xff,
      0x4a,
      0xff,
      0xff,
      0xff,
      0xff,
      ...op.int(0),
      0x74,
      0x62,
      ...op.global('_codecs', 'encode'),
      0x58,
      ...(() => {
        const b = new TextEncoder().encode(bytesF8(0.125));
        return [b.length, 0, 0, 0, ...b];
      })(),
      ...op.str('latin1'),
      0x86,
      0x52,
      0x86,
      0x52,
      // 'opts': argparse.Namespace via NEWOBJ + BUILD({'lr': 0.5, 'size': 1024 via BININT2})
      ...op.str('opts'),
      ...op.global('argparse', 'Namespace'),
      0x29,
      0x81,
      0x7d,
      0x28,
      ...op.str('lr'),
      ...op.float(0.5),
      ...op.str('size'),
      0x4d,
      0x00,
      0x04,
      0x75,
      0x62,
      // 'size': torch.Size((2, 3)); 'dev': torch.device('cuda', 0)
      ...op.str('size'),
      ...op.global('torch', 'Size'),
      ...op.int(2),
      ...op.int(3),
      0x86,
      0x85,
      0x52,
      ...op.str('dev'),
      ...op.global('torch', 'device'),
      ...op.str('cuda'),
      ...op.int(0),
      0x86,
      0x52,
      // 'sd': OrderedDict with one Parameter and a _metadata attribute (BUILD after SETITEMS)
      ...op.str('sd'),
      ...op.global('collections', 'OrderedDict'),
      0x29,
      0x52,
      0x28,
      ...op.str('w'),
      ...op.global('torch._utils', '_rebuild_parameter'),
      ...op.global('torch._utils', '_rebuild_tensor_v2'),
      0x28,
      0x28,
      ...op.str('storage'),
      ...op.global('torch', 'HalfStorage'),
      ...op.str('0'),
      ...op.str('cuda:0'),
      ...op.int(2),
      0x74,
      0x51,
      ...op.int(0),
      ...op.int(2),
      0x85,
      ...op.int(1),
      0x85,
      0x88,
      ...op.global('collections', 'OrderedDict'),
      0x29,
      0x52,
      0x74,
      0x52,
      0x88,
      ...op.global('collections', 'OrderedDict'),
      0x29,
      0x52,
      0x87,
      0x52,
      0x75,
      0x7d,
      ...op.str('_metadata'),
      ...op.global('collections', 'OrderedDict'),
      0x29,
      0x52,
      0x73,
      0x62,
      0x75,
      0x2e,
    ];
    const half = new Uint8Array(new Uint16Array([0x3c00, 0xc000]).buffer);
    const p = await zipWithPickle('train.pth', pkl, { '0': half });
    const obj = await loadCheckpoint(p);
    expect(getPath(obj, 'best_val_loss')).toBe(0.125);
    const opts = getPath(obj, 'opts') as Map<string, unknown>;
    expect(opts).toBeInstanceOf(Map);
    expect(Object.fromEntries(opts)).toEqual({ lr: 0.5, size: 1024 });
    expect(getPath(obj, 'size')).toEqual([2, 3]);
    expect(getPath(obj, 'dev')).toBe('cuda:0');
    const sd = stateDict(obj, 'sd.');
    expect([...sd.keys()]).toEqual(['w']);
    expect(Array.from(toFloat32(sd.get('w')!))).toEqual([1, -2]);
    expect(getPath(obj, 'sd')).toBeInstanceOf(PyOrderedDict);
  });
});
