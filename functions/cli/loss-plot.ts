/**
 * Loss curves of an anonymized image as a PNG: one panel per loss term (total, identity, attribute),
 * one line per face, every attempt of a face concatenated (a retry shows as a jump). Drawn as SVG and
 * rasterised by sharp, which is already a dependency — no plotting library needed for three polylines.
 */
import sharp from 'sharp';
import type { FaceReport } from '../pipeline/types.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
const TERMS = ['total loss', 'identity |cos − m|', 'attribute L1 (FaRL)'] as const;

const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
const fmt = (v: number) =>
  Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2);

/** SVG of the curves (exported for tests: the geometry is checkable without decoding pixels). */
export function lossCurvesSvg(faces: FaceReport[], title: string): string {
  const W = 360;
  const H = 220;
  const pad = { l: 52, r: 12, t: 28, b: 30 };
  const width = W * TERMS.length;
  const height = H + 24 + 18 * Math.ceil(faces.length / 4);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  TERMS.forEach((term, k) => {
    const x0 = k * W;
    const series = faces.map((f) => f.losses.map((l) => l[k]!));
    const all = series.flat().filter(Number.isFinite);
    const steps = Math.max(1, ...series.map((s) => s.length));
    let lo = all.length ? Math.min(...all) : 0;
    let hi = all.length ? Math.max(...all) : 1;
    if (hi - lo < 1e-12) [lo, hi] = [lo - 0.5, hi + 0.5];
    const px = (i: number) => x0 + pad.l + ((W - pad.l - pad.r) * i) / Math.max(1, steps - 1);
    const py = (v: number) => pad.t + (H - pad.t - pad.b) * (1 - (v - lo) / (hi - lo));
    parts.push(
      `<text x="${x0 + W / 2}" y="16" text-anchor="middle" font-weight="bold">${esc(term)}</text>`,
      `<rect x="${x0 + pad.l}" y="${pad.t}" width="${W - pad.l - pad.r}" height="${H - pad.t - pad.b}" fill="none" stroke="#999"/>`,
      `<text x="${x0 + pad.l - 4}" y="${pad.t + 4}" text-anchor="end">${fmt(hi)}</text>`,
      `<text x="${x0 + pad.l - 4}" y="${H - pad.b}" text-anchor="end">${fmt(lo)}</text>`,
      `<text x="${x0 + pad.l}" y="${H - pad.b + 14}">0</text>`,
      `<text x="${x0 + W - pad.r}" y="${H - pad.b + 14}" text-anchor="end">step ${steps - 1}</text>`,
    );
    series.forEach((s, f) => {
      const pts = s.map((v, i) => `${px(i).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
      if (pts)
        parts.push(
          `<polyline fill="none" stroke-width="1.5" stroke="${COLORS[f % COLORS.length]}" points="${pts}"/>`,
        );
    });
  });
  faces.forEach((f, i) => {
    const x = 12 + (i % 4) * (width / 4);
    const y = H + 14 + 18 * Math.floor(i / 4);
    const tag = `face ${f.index + 1}: distance ${f.identityDistance.toFixed(2)}${f.reidentified ? ' (RE-IDENTIFIED)' : ''}, ${f.attempts} attempt${f.attempts === 1 ? '' : 's'}`;
    parts.push(
      `<rect x="${x}" y="${y - 9}" width="12" height="4" fill="${COLORS[i % COLORS.length]}"/>`,
      `<text x="${x + 18}" y="${y - 4}">${esc(tag)}</text>`,
    );
  });
  parts.push(
    `<text x="${width - 8}" y="${height - 6}" text-anchor="end" fill="#666">${esc(title)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

export async function lossCurvesPng(faces: FaceReport[], title: string): Promise<Buffer> {
  return sharp(Buffer.from(lossCurvesSvg(faces, title)))
    .png()
    .toBuffer();
}
