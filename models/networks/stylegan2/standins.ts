/**
 * TEMPORARY stand-ins for the tolerance checks of models/fixtures (being written in parallel); same
 * rules as the fixtures README: outputs max|err| ≤ 1e-4·max|expected|; gradients cosine ≥ 0.9999 and
 * relative L2 ≤ 1e-3. To be replaced by the shared `checkOutput` / `checkGradient` once they land.
 */
import type { ParityCheck } from '../../parity/types.js';

export class ParityShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParityShapeError';
  }
}

function sameLength(name: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new ParityShapeError(`${name}: got ${a.length} values, expected ${b.length}`);
}

export function checkOutput(name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, relTol = 1e-4): ParityCheck {
  sameLength(name, actual, expected);
  let maxErr = 0;
  let maxRef = 0;
  let finite = true;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    if (!Number.isFinite(a)) finite = false;
    maxErr = Math.max(maxErr, Math.abs(a - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  const relMaxErr = maxRef > 0 ? maxErr / maxRef : maxErr;
  return { name, pass: finite && relMaxErr <= relTol, metrics: { maxAbsErr: maxErr, maxAbsExpected: maxRef, relMaxErr } };
}

export function checkGradient(name: string, actual: ArrayLike<number>, expected: ArrayLike<number>): ParityCheck {
  sameLength(name, actual, expected);
  let dot = 0;
  let na = 0;
  let ne = 0;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    dot += a * e;
    na += a * a;
    ne += e * e;
    diff += (a - e) * (a - e);
  }
  const cosine = na > 0 && ne > 0 ? dot / Math.sqrt(na * ne) : na === ne ? 1 : 0;
  const relL2 = ne > 0 ? Math.sqrt(diff / ne) : Math.sqrt(diff);
  return { name, pass: Number.isFinite(cosine) && cosine >= 0.9999 && relL2 <= 1e-3, metrics: { cosine, relL2 } };
}
