/**
 * One call = one photo anonymized FALCO-style: decode → detect → per face (align → e4e inversion →
 * nearest fake → latent composition → Adam steps → render → paste back → independent identity check)
 * → encode. Used by the service workers and the batch CLI through `createAnonymizer`.
 *
 * Policies (decided here, reported in ImageReport):
 * - **No face found**: outcome 'no_faces'; the photo is returned with its pixels unchanged but
 *   re-encoded, so every metadata block (EXIF/GPS, XMP, IPTC, ICC) is stripped anyway. Whether such an
 *   image is billed is the service's decision (the outcome says what happened).
 * - **Face still re-identified** (face-api 128-D recognizer, independent of every network the
 *   optimisation uses: distance < manifest.reid.threshold, 0.6): the face is redone from the original
 *   photo up to `reid.retries` times (2), each retry pushing harder away from the identity: the target
 *   cosine m is lowered by `reid.marginStep` (0.2; FALCO's |cos − m| with m < 0 asks for an *opposite*
 *   identity — note that a larger m would make the face MORE similar), λ_id is multiplied by
 *   `reid.lambdaIdFactor` (2), and the next-nearest fake is used as the starting point. If the last
 *   attempt is still re-identified the whole image fails with PrivacyError (not returned, not billed):
 *   we never hand back a photo in which we know a face is recognisable.
 * - **e4e input**: the face is aligned directly at 256 px from the photo (FFHQ alignment, area
 *   prefilter) rather than upsampling the generator-resolution crop, which is the same as FALCO's
 *   1024 → 256 resize for the production bundle and keeps detail for small demo generators.
 * - Calls on one instance are serialised: the sessions already use every core, so running two images
 *   at once only doubles peak memory.
 */
import { join } from 'node:path';
import { FaceApi, clipBox } from '../../models/faceapi/index.js';
import { FalcoEngine, type EngineOptions } from '../../models/falco/engine.js';
import { checkLayers, type BundleManifest } from '../../models/bundle/manifest.js';
import { alignFace, type Point } from './align.js';
import { FaceDetector, type DetectFacesOptions } from './detect.js';
import { IdentityChecker, compareDescriptors, type IdentityCheck } from './identity.js';
import {
  contentTypeOf,
  decodeImage,
  encodeImage,
  fromFloatPlanes,
  toFloatPlanes,
  type ImageLimits,
  type RgbImage,
} from './image-io.js';
import { pasteFace } from './paste.js';
import { OUTPUT_FORMATS } from './formats.js';
import { DEFAULT_RESOURCE_LIMITS, OPTION_RANGES as R } from '../shared/limits.js';
import {
  InputError,
  PrivacyError,
  type AnonymizeOptions,
  type AnonymizeResult,
  type Anonymizer,
  type Box,
  type FaceReport,
  type ImageReport,
  type OutputFormat,
  type Progress,
} from './types.js';

export interface AnonymizerConfig {
  bundleDir: string;
  engine?: EngineOptions;
  detect?: DetectFacesOptions;
  limits?: Partial<ImageLimits>;
  /**
   * Per-image compute bounds (functions/shared/limits.ts; the worker passes its deployment's): more faces than
   * `maxFaces`, or faces × steps × attempts above `maxComputeSteps`, fails the image as an InputError (unbilled)
   * before any optimisation runs. Absent: the service defaults.
   */
  budget?: { maxFaces: number; maxComputeSteps: number };
  /** Create every session at start-up instead of on first use (default true: workers and the CLI want it). */
  warm?: boolean;
}

/** Fully resolved per-call settings. */
export interface ResolvedOptions {
  idMargin: number;
  steps: number;
  lambdaId: number;
  lambdaAttr: number;
  layers: [number, number];
  lr: number;
  seed: number;
  format: OutputFormat | undefined;
}

const FORMATS: readonly OutputFormat[] = OUTPUT_FORMATS;

/** Merge per-call options over the bundle defaults; every bad value is an InputError naming it. */
export function resolveOptions(o: AnonymizeOptions | undefined, m: BundleManifest): ResolvedOptions {
  const opts = o ?? {};
  if (typeof opts !== 'object') throw new InputError('invalid-options', 'options must be an object');
  const bad = (field: string, why: string): never => {
    throw new InputError('invalid-options', `${field} ${why}`);
  };
  const known = new Set(['idMargin', 'steps', 'lambdaId', 'lambdaAttr', 'layers', 'lr', 'seed', 'format']);
  for (const k of Object.keys(opts))
    if (!known.has(k)) bad(k, `is not an option (known: ${[...known].join(', ')})`);
  const d = m.defaults;
  const numIn = (field: keyof AnonymizeOptions, v: unknown, lo: number, hi: number, int = false): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
      bad(field, `must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    return v as number;
  };
  const r: ResolvedOptions = {
    // Ranges from functions/shared/limits.ts (the API's zod schema reads the same numbers).
    idMargin:
      opts.idMargin === undefined
        ? d.idMargin
        : numIn('idMargin', opts.idMargin, R.idMargin.min, R.idMargin.max),
    steps: opts.steps === undefined ? d.steps : numIn('steps', opts.steps, R.steps.min, R.steps.max, true),
    lambdaId:
      opts.lambdaId === undefined
        ? d.lambdaId
        : numIn('lambdaId', opts.lambdaId, R.lambdaId.min, R.lambdaId.max),
    lambdaAttr:
      opts.lambdaAttr === undefined
        ? d.lambdaAttr
        : numIn('lambdaAttr', opts.lambdaAttr, R.lambdaAttr.min, R.lambdaAttr.max),
    lr: opts.lr === undefined ? d.lr : numIn('lr', opts.lr, R.lr.min, R.lr.max),
    seed: opts.seed === undefined ? 0 : numIn('seed', opts.seed, R.seed.min, R.seed.max, true),
    layers: d.layers,
    format: undefined,
  };
  if (opts.layers !== undefined) {
    if (!Array.isArray(opts.layers)) bad('layers', 'must be [start, end)');
    try {
      r.layers = checkLayers(opts.layers, m.trainableRange, 'layers');
    } catch (e) {
      bad('layers', (e as Error).message.replace(/^layers /, ''));
    }
  }
  if (opts.format !== undefined) {
    if (!FORMATS.includes(opts.format))
      bad('format', `must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(opts.format)}`);
    r.format = opts.format;
  }
  return r;
}

/** Faces per image and faces × steps × attempts within the compute budget, or an InputError saying which. */
export function checkBudget(
  faces: number,
  steps: number,
  attempts: number,
  budget: { maxFaces: number; maxComputeSteps: number },
): void {
  if (faces > budget.maxFaces)
    throw new InputError(
      'too-many-faces',
      `more than ${budget.maxFaces} faces found; an image may hold at most ${budget.maxFaces}`,
    );
  const cost = faces * steps * attempts;
  if (cost > budget.maxComputeSteps)
    throw new InputError(
      'compute-budget-exceeded',
      `${faces} faces × ${steps} steps × ${attempts} attempts = ${cost} optimisation steps exceeds the compute budget of ${budget.maxComputeSteps} per image`,
    );
}

/** Monotone progress reporter (a retry must not move the bar backwards). */
function progressFn(cb: ((p: Progress) => void) | undefined): (p: Progress) => void {
  let last = 0;
  return (p) => {
    if (!cb) return;
    last = Math.max(last, Math.min(1, p.fraction));
    cb({ ...p, fraction: last });
  };
}

const DETECT_SHARE = 0.05;
const ENCODE_SHARE = 0.03;

class FalcoAnonymizer implements Anonymizer {
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    readonly engine: FalcoEngine,
    private readonly faceapi: FaceApi,
    private readonly detector: FaceDetector,
    private readonly identity: IdentityChecker,
    private readonly cfg: AnonymizerConfig,
  ) {}

  anonymize(
    input: Uint8Array,
    options?: AnonymizeOptions,
    onProgress?: (p: Progress) => void,
  ): Promise<AnonymizeResult> {
    if (this.closed) return Promise.reject(new Error('anonymizer is closed'));
    const run = this.queue.then(() => this.run(input, options, onProgress));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(
    input: Uint8Array,
    options: AnonymizeOptions | undefined,
    onProgress?: (p: Progress) => void,
  ): Promise<AnonymizeResult> {
    const m = this.engine.manifest;
    const opts = resolveOptions(options, m);
    const progress = progressFn(onProgress);
    const timings: Record<string, number> = {};
    const time = async <T>(k: string, f: () => Promise<T>, into = timings): Promise<T> => {
      const t0 = performance.now();
      try {
        return await f();
      } finally {
        into[k] = (into[k] ?? 0) + (performance.now() - t0);
      }
    };
    const t0 = performance.now();

    progress({ fraction: 0, stage: 'decode' });
    const decoded = await time('decode', () => decodeImage(input, this.cfg.limits));
    const photo = decoded.image;
    const format = opts.format ?? decoded.format;
    progress({ fraction: DETECT_SHARE / 2, stage: 'detect' });
    const budget = this.cfg.budget ?? {
      maxFaces: DEFAULT_RESOURCE_LIMITS.maxFacesPerImage,
      maxComputeSteps: DEFAULT_RESOURCE_LIMITS.maxComputeSteps,
    };
    // One more than the limit, so that "too many" is seen rather than silently capped (a face left out would
    // be published un-anonymized).
    const faces = await time('detect', () =>
      this.detector.detect(photo, { ...this.cfg.detect, maxFaces: budget.maxFaces + 1 }),
    );
    checkBudget(faces.length, opts.steps, 1 + m.reid.retries, budget);
    const reports: FaceReport[] = [];
    let out = photo;
    const faceShare = (1 - DETECT_SHARE - ENCODE_SHARE) / Math.max(1, faces.length);
    for (const face of faces) {
      const base = DETECT_SHARE + face.index * faceShare;
      const rep = await this.anonymizeFace(photo, out, face, opts, (f, p) =>
        progress({ ...p, fraction: base + f * faceShare, face: face.index, faces: faces.length }),
      );
      out = rep.image;
      reports.push(rep.report);
    }
    progress({ fraction: 1 - ENCODE_SHARE, stage: 'encode' });
    // With PNG every untouched pixel is bit-exact; JPEG/WebP re-encoding is lossy everywhere (image-io.ts).
    const image = await time('encode', () => encodeImage(out, format));
    timings['total'] = performance.now() - t0;
    const report: ImageReport = {
      width: photo.width,
      height: photo.height,
      format,
      faces: reports,
      outcome: faces.length === 0 ? 'no_faces' : 'ok',
      bundle: { id: m.id, demo: m.demo },
      timingsMs: roundTimings(timings),
    };
    const provider = this.engine.activeProvider();
    if (provider) report.provider = provider;
    progress({ fraction: 1, stage: 'encode' });
    return { image, contentType: contentTypeOf(format), report };
  }

  /** One face: every attempt starts again from the original photo; `current` holds earlier faces' results. */
  private async anonymizeFace(
    photo: RgbImage,
    current: RgbImage,
    face: { index: number; box: Box; score: number; landmarks: Point[] },
    opts: ResolvedOptions,
    progress: (fraction: number, p: Omit<Progress, 'fraction'>) => void,
  ): Promise<{ image: RgbImage; report: FaceReport }> {
    const e = this.engine;
    const m = e.manifest;
    const timings: Record<string, number> = {};
    const time = async <T>(k: string, f: () => Promise<T> | T): Promise<T> => {
      const t0 = performance.now();
      try {
        return await f();
      } finally {
        timings[k] = (timings[k] ?? 0) + (performance.now() - t0);
      }
    };
    progress(0, { stage: 'align' });
    const aligned = await time('align', () => alignFace(photo, face.landmarks, e.N));
    const aligned256 = await time('align', () => alignFace(photo, face.landmarks, 256));
    const half: [number, number, number] = [0.5, 0.5, 0.5];
    progress(0.02, { stage: 'invert' });
    const real = await time('invert', () => e.invert(toFloatPlanes(aligned256.crop, half, half)));
    const targets = await time('targets', () => e.targets(toFloatPlanes(aligned.crop, half, half)));
    const ranked = await time('nearest', () => e.nearest(targets.farl, opts.seed));
    const attempts = 1 + m.reid.retries;
    let margin = opts.idMargin;
    let lambdaId = opts.lambdaId;
    let made = 0;
    let last: { image: RgbImage; losses: Array<[number, number, number]>; check: IdentityCheck } | undefined;
    for (let a = 0; a < attempts; a++) {
      made++;
      const fake = ranked[a % ranked.length]!.code;
      const span = 0.9 / attempts;
      const at = 0.05 + a * span;
      const res = await time('optimize', () =>
        e.optimize({
          real,
          fake,
          targets,
          layers: opts.layers,
          steps: opts.steps,
          lr: opts.lr,
          lrMilestones: m.defaults.lrMilestones,
          lrGamma: m.defaults.lrGamma,
          margin,
          lambdaId,
          lambdaAttr: opts.lambdaAttr,
          onStep: (s, n) =>
            progress(at + ((s + 1) / Math.max(1, n)) * span * 0.9, {
              stage: 'optimize',
              step: s + 1,
              steps: n,
            }),
        }),
      );
      progress(at + span * 0.9, { stage: 'render' });
      const planes = await time('render', () => e.render(res.code));
      const crop = fromFloatPlanes(planes, e.N, e.N, half, half);
      progress(at + span * 0.95, { stage: 'paste' });
      const pasted = await time('paste', () => pasteFace(current, crop, aligned.alignment, face.landmarks));
      progress(at + span, { stage: 'verify' });
      const check = await time('verify', () => this.verify(photo, pasted.image, face, m.reid.threshold));
      last = { image: pasted.image, losses: res.losses, check };
      if (!check.reidentified) break;
      margin -= m.reid.marginStep;
      lambdaId *= m.reid.lambdaIdFactor;
      if (a + 1 === attempts)
        throw new PrivacyError(
          `face ${face.index} is still recognisable after ${attempts} attempts (face-api distance ${check.distance.toFixed(3)} < ${check.threshold}); the image is not returned`,
        );
    }
    return {
      image: last!.image,
      report: {
        index: face.index,
        box: { x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height },
        score: face.score,
        losses: last!.losses,
        identityDistance: last!.check.distance,
        reidentified: last!.check.reidentified,
        attempts: made,
        timingsMs: roundTimings(timings),
      },
    };
  }

  /** Recognizer distance original vs anonymized; for a face whose landmarks fall off-image, the clipped box. */
  private async verify(
    original: RgbImage,
    anonymized: RgbImage,
    face: { box: Box; landmarks: Point[] },
    threshold: number,
  ): Promise<IdentityCheck> {
    try {
      return await this.identity.check(original, anonymized, face, threshold);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      const box = clipBox(face.box, original.width, original.height);
      if (!box) throw err;
      const a = await this.faceapi.descriptorOfBox(original, box);
      const b = await this.faceapi.descriptorOfBox(anonymized, box);
      return compareDescriptors(a, b, threshold);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.engine.close();
    await this.faceapi.close();
  }
}

function roundTimings(t: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}

/** Open a bundle and its face-api nets; with `warm`, every session is created before returning. */
export async function createAnonymizer(cfg: AnonymizerConfig): Promise<Anonymizer & { engine: FalcoEngine }> {
  const engine = await FalcoEngine.open(cfg.bundleDir, cfg.engine);
  if (!engine.manifest.pool) {
    await engine.close();
    throw new Error(
      `bundle ${cfg.bundleDir} has no fake pool; run \`npm run models -- pool --bundle ${cfg.bundleDir} --n 64\``,
    );
  }
  const faceapi = new FaceApi({
    modelDir: join(cfg.bundleDir, 'faceapi'),
    ...(cfg.engine?.threads ? { threads: cfg.engine.threads } : {}),
    ...(cfg.engine?.provider ? { provider: cfg.engine.provider } : {}),
    ...(cfg.engine?.log ? { log: cfg.engine.log } : {}),
  });
  const a = new FalcoAnonymizer(
    engine,
    faceapi,
    new FaceDetector(faceapi),
    new IdentityChecker(faceapi),
    cfg,
  );
  if (cfg.warm ?? true) {
    await engine.warmup();
    await faceapi.warmup();
    engine.pool();
  }
  return a;
}
