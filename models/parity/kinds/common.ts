/**
 * What every parity handler needs from a loosely typed case: its pattern references, its expectation
 * map and golden arrays, each validated with an error naming the case and the field. One place, so the
 * handlers keep only what is specific to their network.
 */
import { join } from 'node:path';
import { FixtureFormatError } from '../../checkpoint/errors.js';
import { toFloat32 } from '../../checkpoint/tensor.js';
import { readNpy } from '../../fixtures/npy.js';
import { pattern } from '../../fixtures/pattern.js';
import type { ParityCase, ParityCheck } from '../types.js';

export interface PatternRef {
  pattern: string;
  shape?: number[];
  lo: number;
  hi: number;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.join() === b.join();

/**
 * The pattern reference in `c[field]`. When `want` is given, a shape stated by the case must equal it
 * (`what` names the consumer in the error, e.g. "the 64px generator takes").
 */
export function patternRef(
  c: ParityCase,
  field: string,
  want?: readonly number[],
  what = 'the network takes',
): PatternRef {
  const v = c[field] as Partial<PatternRef> | undefined;
  if (
    !v ||
    typeof v !== 'object' ||
    typeof v.pattern !== 'string' ||
    typeof v.lo !== 'number' ||
    typeof v.hi !== 'number'
  )
    throw new FixtureFormatError(`case ${c.name}: "${field}" must be {pattern, shape?, lo, hi}`);
  if (
    v.shape !== undefined &&
    (!Array.isArray(v.shape) || v.shape.some((d) => !Number.isInteger(d) || d <= 0))
  )
    throw new FixtureFormatError(`case ${c.name}: "${field}.shape" must be a list of positive integers`);
  if (want && v.shape && !sameShape(v.shape, want))
    throw new FixtureFormatError(`case ${c.name}: "${field}.shape" is [${v.shape}] but ${what} [${want}]`);
  return v as PatternRef;
}

/** Materialise `c[field]` at `shape` (validated as above). */
export function patternAt(
  c: ParityCase,
  field: string,
  shape: readonly number[],
  what?: string,
): Float32Array {
  const r = patternRef(c, field, shape, what);
  return pattern(r.pattern, shape, r.lo, r.hi);
}

/** The case's `expect` map, restricted to known names (a list or a predicate), each a .npy file name. */
export function expectations(
  c: ParityCase,
  known: readonly string[] | ((k: string) => boolean),
): Record<string, string> {
  const expect = c['expect'];
  if (!expect || typeof expect !== 'object')
    throw new FixtureFormatError(`case ${c.name}: "expect" is missing`);
  const ok = typeof known === 'function' ? known : (k: string) => known.includes(k);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(expect as Record<string, unknown>)) {
    if (!ok(k))
      throw new FixtureFormatError(
        `case ${c.name}: unknown ${c.kind} expectation "${k}"` +
          (typeof known === 'function' ? '' : ` (known: ${known.join(', ')})`),
      );
    if (typeof v !== 'string')
      throw new FixtureFormatError(`case ${c.name}: expectation "${k}" must be a .npy file name`);
    out[k] = v;
  }
  return out;
}

/** The case's weight spec file name. */
export function weightsFile(c: ParityCase): string {
  if (typeof c['weights'] !== 'string')
    throw new FixtureFormatError(`case ${c.name}: "weights" must be a spec file name`);
  return c['weights'];
}

/** A golden array, checked to have `shape`. */
export function golden(c: ParityCase, dir: string, file: string, shape: readonly number[]): Float32Array {
  const t = readNpy(join(dir, file));
  if (!sameShape(t.shape, shape))
    throw new FixtureFormatError(`case ${c.name}: ${file} has shape [${t.shape}], expected [${shape}]`);
  if (t.dtype !== 'float32' && t.dtype !== 'float64')
    throw new FixtureFormatError(`case ${c.name}: ${file} is ${t.dtype}`);
  return toFloat32(t);
}

/** A check result under its expectation name. */
export const named = (name: string, r: { pass: boolean; metrics: object }): ParityCheck => ({
  name,
  pass: r.pass,
  metrics: { ...(r.metrics as Record<string, number>) },
});
