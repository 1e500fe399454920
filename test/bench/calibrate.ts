/**
 * `npm run bench -- calibrate [--write] [--sweep] [--only a,b]`: calibrates each privacy-check recognizer on
 * identity pairs from the sample photos (test/identity/pairs.ts) and prints, per recognizer, the chosen
 * threshold with its false-match rate (different people called "same") and false non-match rate (the same
 * person called "different"), the equal error rate, and the distances of the negative controls (face covered
 * by a magenta blob, a flat fill, a pixelation). `--write` stores the result as
 * models/recognizers/calibration.json (what the privacy check reads). `--sweep` compares crop zooms for the
 * human-models nets.
 *
 * Threshold rule (privacy first): a false non-match is a recognisable face certified as anonymous, a false
 * match only makes us redo or obscure a face. The threshold minimises 2·FNMR + FMR over all midpoints between
 * observed distances (ties to the larger threshold); where the two sets separate, it is the middle of the gap.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format } from 'prettier';
import { FaceApi } from '../../models/faceapi/index.js';
import {
  openRecognizer,
  RECOGNIZER_NAMES,
  type Recognizer,
  type RecognizerName,
} from '../../models/recognizers/index.js';
import {
  CALIBRATION_PATH,
  combine,
  type Calibration,
  type RecognizerCalibration,
} from '../../functions/pipeline/identity.js';
import { control, CONTROLS, sampleFaces, variant, VARIANTS, type SampleFace } from '../identity/pairs.js';
import { report } from './report.js';

/** A false non-match (recognisable face certified anonymous) counts this many false matches. */
export const FNMR_WEIGHT = 2;

interface Embedded {
  id: string;
  kind: string;
  e: Float32Array;
}

function rates(same: number[], diff: number[], t: number): { fmr: number; fnmr: number } {
  return {
    fmr: diff.filter((d) => d < t).length / diff.length,
    fnmr: same.filter((d) => d >= t).length / same.length,
  };
}

export function chooseThreshold(same: number[], diff: number[]): number {
  // Sweep every midpoint between neighbouring observed distances; cost = FNMR_WEIGHT·FNMR + FMR, ties to the
  // larger threshold (fewer false non-matches).
  const all = [...same.map((d) => [d, 1] as const), ...diff.map((d) => [d, 0] as const)].sort(
    (x, y) => x[0] - y[0],
  );
  let sameBelow = 0;
  let diffBelow = 0;
  let best = { cost: Infinity, t: all[0]![0] };
  for (let i = 0; i < all.length; i++) {
    if (all[i]![1]) sameBelow++;
    else diffBelow++;
    const next = all[i + 1]?.[0];
    if (next === undefined || next === all[i]![0]) continue;
    const fnmr = 1 - sameBelow / same.length;
    const fmr = diffBelow / diff.length;
    const cost = FNMR_WEIGHT * fnmr + fmr;
    if (cost <= best.cost) best = { cost, t: (all[i]![0] + next) / 2 };
  }
  return best.t;
}

function eer(same: number[], diff: number[]): number {
  const ts = [...same, ...diff].sort((a, b) => a - b);
  let best = 1;
  for (const t of ts) {
    const r = rates(same, diff, t);
    best = Math.min(best, Math.max(r.fmr, r.fnmr));
  }
  return best;
}

async function embedAll(
  models: FaceApi,
  rec: Recognizer,
  faces: SampleFace[],
): Promise<{ items: Embedded[]; controls: Record<string, number[]> }> {
  const items: Embedded[] = [];
  const cache = new Map();
  const controls: Record<string, number[]> = {};
  for (const f of faces) {
    const e0 = await rec.embed(f.image, f);
    if (!e0) continue;
    items.push({ id: f.id, kind: 'original', e: e0 });
    for (const v of VARIANTS) {
      const vf = await variant(models, f, v, cache);
      const e = await rec.embed(vf.image, vf);
      if (e) items.push({ id: f.id, kind: v, e });
    }
    for (const c of CONTROLS) {
      const img = control(f, c);
      // As the privacy check does: landmarks re-estimated in the original box, else the original ones.
      const lm = (await models.landmarks(img, f.box)) ?? f.landmarks;
      const e = await rec.embed(img, { box: f.box, landmarks: lm });
      if (e) (controls[c] ??= []).push(rec.distance(e0, e));
    }
  }
  return { items, controls };
}

function pairs(
  rec: Recognizer,
  items: Embedded[],
): { same: number[]; diff: number[]; keyed: Map<string, { d: number; same: boolean }> } {
  const same: number[] = [];
  const diff: number[] = [];
  const keyed = new Map<string, { d: number; same: boolean }>();
  for (let i = 0; i < items.length; i++)
    for (let j = i + 1; j < items.length; j++) {
      const a = items[i]!;
      const b = items[j]!;
      const d = rec.distance(a.e, b.e);
      (a.id === b.id ? same : diff).push(d);
      keyed.set(`${a.id}:${a.kind}|${b.id}:${b.kind}`, { d, same: a.id === b.id });
    }
  return { same, diff, keyed };
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};
// Four significant digits: distances span 1e-4 (mobilefacenet) to 1.
const r4 = (x: number) => Number(x.toPrecision(4));

export default async function calibrate(args: string[]): Promise<void> {
  const write = args.includes('--write');
  const sweep = args.includes('--sweep');
  const onlyArg = args[args.indexOf('--only') + 1];
  const names = (
    args.includes('--only') && onlyArg ? onlyArg.split(',') : RECOGNIZER_NAMES
  ) as RecognizerName[];
  const models = new FaceApi({ threads: 2 });
  const faces = await sampleFaces(models);
  const out: Record<string, RecognizerCalibration> = {};
  // Per recognizer, distance per pair key, for the combined policy's figures.
  const byPair = new Map<string, Map<string, { d: number; same: boolean }>>();
  for (const name of names) {
    const zooms = sweep && name !== 'faceapi-128' ? [1, 0.8, 0.65] : [undefined];
    for (const zoom of zooms) {
      const rec = openRecognizer(name, { faceapi: models, threads: 2 }, zoom);
      const t0 = performance.now();
      const { items, controls } = await embedAll(models, rec, faces);
      const ms = (performance.now() - t0) / items.length;
      await rec.close();
      const { same, diff, keyed } = pairs(rec, items);
      if (zoom === undefined) byPair.set(name, keyed);
      const threshold = chooseThreshold(same, diff);
      const { fmr, fnmr } = rates(same, diff, threshold);
      const c: RecognizerCalibration = {
        metric: rec.metric,
        threshold: r4(threshold),
        falseMatchRate: r4(fmr),
        falseNonMatchRate: r4(fnmr),
        equalErrorRate: r4(eer(same, diff)),
        pairs: { same: same.length, different: diff.length },
        same: { median: r4(q(same, 0.5)), p98: r4(q(same, 0.98)), max: r4(Math.max(...same)) },
        different: { min: r4(Math.min(...diff)), p02: r4(q(diff, 0.02)), median: r4(q(diff, 0.5)) },
        controls: Object.fromEntries(
          Object.entries(controls).map(([k, ds]) => [
            k,
            {
              min: r4(Math.min(...ds)),
              median: r4(q(ds, 0.5)),
              max: r4(Math.max(...ds)),
              recognisable: r4(ds.filter((d) => d < threshold).length / ds.length),
            },
          ]),
        ),
        ...(zoom !== undefined ? { zoom } : {}),
        ...(name === 'faceapi-128'
          ? {
              atDefault060: (() => {
                const r = rates(same, diff, 0.6);
                return { falseMatchRate: r4(r.fmr), falseNonMatchRate: r4(r.fnmr) };
              })(),
            }
          : {}),
      };
      if (!sweep || zoom === undefined) out[name] = c;
      report('calibrate', `${name}${zoom !== undefined ? `@zoom${zoom}` : ''}`, c.threshold, c.metric, {
        ...c,
        msPerFace: Math.round(ms),
        faces: faces.length,
      });
    }
  }
  await models.close();
  if (sweep) return;
  const calibration: Calibration = {
    format: 'falco-reid-calibration/1',
    generatedBy: 'npm run bench -- calibrate --write',
    faces: faces.length,
    variants: [...VARIANTS],
    controls: [...CONTROLS],
    fnmrWeight: FNMR_WEIGHT,
    recognizers: out,
  };
  const policy = combine(calibration);
  // The combined rule ('any' recognizer says same → recognisable) on the pairs every policy recognizer scored.
  const maps = policy.recognizers.map((n) => [byPair.get(n), out[n]?.threshold] as const);
  if (maps.every(([m, t]) => m && t)) {
    let fm = 0;
    let fnm = 0;
    let nd = 0;
    let ns = 0;
    for (const [key, { same }] of maps[0]![0]!) {
      const ds = maps.map(([m]) => m!.get(key)?.d);
      if (ds.some((d) => d === undefined)) continue;
      const recognisable = ds.some((d, i) => d! < maps[i]![1]!);
      if (same) {
        ns++;
        if (!recognisable) fnm++;
      } else {
        nd++;
        if (recognisable) fm++;
      }
    }
    calibration.policy = {
      ...policy,
      falseMatchRate: r4(fm / nd),
      falseNonMatchRate: r4(fnm / ns),
      pairs: { same: ns, different: nd },
    };
  }
  report('calibrate', 'policy', policy.recognizers.length, 'recognizers', { ...calibration.policy });
  if (write) {
    // Written in the repository's style so `npm run format:check` stays clean after a regeneration.
    writeFileSync(CALIBRATION_PATH, await format(JSON.stringify(calibration), { parser: 'json' }));
    report('calibrate', 'written', 1, 'file', { path: join('models', 'recognizers', 'calibration.json') });
  }
}
