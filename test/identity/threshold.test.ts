/** The calibration's threshold rule (test/bench/calibrate.ts): argmin 2·FNMR + FMR over midpoints. */
import { describe, expect, it } from 'vitest';
import { chooseThreshold } from '../bench/calibrate.js';

describe('chooseThreshold', () => {
  it('puts the threshold in the middle of the gap when the sets separate', () => {
    expect(chooseThreshold([0.1, 0.2, 0.3], [0.5, 0.6, 0.9])).toBeCloseTo(0.4, 12);
  });

  it('weighs a false non-match twice a false match when the sets overlap', () => {
    // One same-person pair at 0.55 among different pairs 0.5, 0.6, 0.7, 0.8: admitting it costs one false match
    // (1/4 = 0.25) and saves a false non-match (2 · 1/4 = 0.5), so the threshold moves above 0.55.
    const t = chooseThreshold([0.1, 0.2, 0.3, 0.55], [0.5, 0.6, 0.7, 0.8]);
    expect(t).toBeCloseTo(0.575, 12);
  });
});
