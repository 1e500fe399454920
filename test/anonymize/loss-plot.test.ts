import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { lossCurvesPng, lossCurvesSvg } from '../../functions/cli/loss-plot.js';
import type { FaceReport } from '../../functions/pipeline/types.js';

const face = (index: number, losses: Array<[number, number, number]>, reidentified = false): FaceReport => ({
  index,
  box: { x: 0, y: 0, width: 10, height: 10 },
  score: 0.9,
  losses,
  identityDistance: reidentified ? 0.4 : 0.8,
  reidentified,
  attempts: reidentified ? 3 : 1,
  timingsMs: {},
});

describe('loss curves picture', () => {
  const faces = [
    face(0, [
      [10, 1, 100],
      [5, 0.5, 50],
      [1, 0.1, 10],
    ]),
    face(1, [[8, 0.8, 80]], true),
  ];
  it('draws one line per face and term, scaled to the data, with a legend that flags re-identification', () => {
    const svg = lossCurvesSvg(faces, 'x.jpg');
    expect(svg.match(/<polyline/g)).toHaveLength(6);
    // The largest total loss (10, face 1, step 0) sits on the top edge of the first panel (y = 28),
    // the smallest (1, step 2) on its bottom edge (y = 220 − 30), 5 at 28 + 162·(1 − 4/9) = 118.
    const first = /points="([^"]+)"/.exec(svg)![1]!.split(' ');
    expect(first).toEqual(['52.0,28.0', '200.0,118.0', '348.0,190.0']);
    expect(svg).toContain('face 2: distance 0.40 (RE-IDENTIFIED), 3 attempts');
    expect(svg).toContain('face 1: distance 0.80, 1 attempt<');
  });
  it('renders to a PNG of the panel grid size', async () => {
    const png = await lossCurvesPng(faces, 'x.jpg');
    const m = await sharp(png).metadata();
    expect([m.format, m.width, m.height]).toEqual(['png', 1080, 262]);
  });
});
