/**
 * TEMPORARY stand-ins for models/fixtures (pattern formula, .npy reader, spec loader, tolerance checks),
 * used until that module lands; then the FaRL parity handler switches to it and this file goes away.
 * Implements the fixtures README only as far as the FaRL case needs (float32 little-endian .npy).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { makeTensor, type Tensor } from '../../checkpoint/tensor.js';

const fmix32 = (h: number): number => {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
};

export function pattern(name: string, n: number, lo: number, hi: number): Float32Array {
  let seed = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) seed = Math.imul(seed ^ b, 0x01000193) >>> 0;
  const out = new Float32Array(n);
  const span = hi - lo;
  for (let i = 0; i < n; i++) out[i] = lo + span * (fmix32((Math.imul(i, 0x9e3779b9) + seed) >>> 0) / 4294967296);
  return out;
}

export function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const buf = readFileSync(path);
  if (buf.readUInt32BE(0) !== 0x934e554d) throw new FixtureFormatError(`${path}: not a .npy file`);
  const major = buf[6]!;
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.subarray(start, start + hlen).toString('latin1');
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header))
    throw new FixtureFormatError(`${path}: only C-order little-endian float32 is supported (${header.trim()})`);
  const m = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!m) throw new FixtureFormatError(`${path}: no shape in header`);
  const shape = m[1]!.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const off = start + hlen;
  const data = new Float32Array(n);
  new Uint8Array(data.buffer).set(buf.subarray(off, off + n * 4));
  return { shape, data };
}

interface SpecEntry {
  key: string;
  shape: number[];
  lo?: number;
  hi?: number;
  values?: number[];
}

export function loadSpec(dir: string, file: string): Map<string, Tensor> {
  const entries = JSON.parse(readFileSync(join(dir, file), 'utf8')) as SpecEntry[];
  const out = new Map<string, Tensor>();
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const data = e.values ? Float32Array.from(e.values) : pattern(e.key, n, e.lo!, e.hi!);
    out.set(e.key, makeTensor('float32', e.shape, data));
  }
  return out;
}

export function checkOutput(name: string, got: Float32Array, want: Float32Array) {
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(got[i]! - want[i]!));
    maxRef = Math.max(maxRef, Math.abs(want[i]!));
  }
  const relMaxErr = maxAbs / maxRef;
  return { name, pass: got.length === want.length && relMaxErr <= 1e-4, metrics: { maxAbsErr: maxAbs, relMaxErr } };
}

export function checkGradient(name: string, got: Float32Array, want: Float32Array) {
  let dot = 0;
  let gg = 0;
  let ww = 0;
  let dd = 0;
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!;
    const b = want[i]!;
    dot += a * b;
    gg += a * a;
    ww += b * b;
    dd += (a - b) ** 2;
  }
  const cosine = dot / Math.sqrt(gg * ww);
  const relL2 = Math.sqrt(dd / ww);
  return { name, pass: got.length === want.length && cosine >= 0.9999 && relL2 <= 1e-3, metrics: { cosine, relL2 } };
}
