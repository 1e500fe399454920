/**
 * The model bundle: one directory holding everything one anonymization engine needs, described by
 * `manifest.json`.
 *
 *   <bundle>/manifest.json          this file's `BundleManifest`
 *   <bundle>/encoder.onnx(.data)    the five FALCO models of models/falco/contract.ts
 *   <bundle>/targets.onnx(.data)
 *   <bundle>/step.onnx(.data)
 *   <bundle>/render.onnx(.data)
 *   <bundle>/mapping.onnx(.data)
 *   <bundle>/faceapi/*             face-api detector / landmarks / recognizer / age-gender / expression weights
 *   <bundle>/human/*               human-models recognizer(s) of the privacy check (tfjs graph model.json + shards)
 *   <bundle>/pool/codes.npy         fake pool: W+ codes [n, L, 512] (float32)
 *   <bundle>/pool/farl.npy          fake pool: FaRL embeddings [n, D] (float32, L2-normalised)
 *
 * The manifest records where every component came from (file name + sha256 of the source checkpoint),
 * its license, the generator resolution, the allowed trainable W+ layer range, FALCO's defaults and the
 * pool, so a worker can refuse a bundle it does not understand and a report can say exactly which
 * weights produced an image. Everything is validated on read: a hand-edited or truncated manifest is a
 * `BundleError` naming the field, never a crash later in a session.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FALCO_DEFAULTS, MODEL_FILES, type ModelName } from '../falco/contract.js';

export const BUNDLE_FORMAT = 'falco-bundle/1';
export const MANIFEST_FILE = 'manifest.json';

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

export type ComponentName = 'generator' | 'e4e' | 'arcface' | 'farl' | 'faceapi';

export interface ComponentInfo {
  /** File name of the source checkpoint (no directory: bundles must not leak operator paths). */
  source: string;
  /** sha256 (hex) of the source file; for face-api, of the concatenated manifests + shards. */
  sha256: string;
  license: string;
  /** Free-form notes (e.g. "pattern weights, not trained"). */
  note?: string;
}

export interface ModelFileInfo {
  file: string;
  /** sha256 of the .onnx file (the .onnx.data file, if any, is listed separately). */
  sha256: string;
  bytes: number;
  data?: { file: string; sha256: string; bytes: number };
}

export interface BundleDefaults {
  steps: number;
  lr: number;
  lrMilestones: number[];
  lrGamma: number;
  lambdaId: number;
  lambdaAttr: number;
  idMargin: number;
  /** Trainable W+ layer range [start, end). */
  layers: [number, number];
  truncation: number;
}

export interface PoolInfo {
  n: number;
  psi: number;
  seed: number;
  /** W+ codes [n, L, 512], npy float32, relative to the bundle. */
  codes: string;
  /** FaRL embeddings [n, D], npy float32, L2-normalised. */
  features: string;
  featureDim: number;
  sha256: { codes: string; features: string };
}

/** Re-identification check policy (see functions/pipeline/anonymize.ts). */
export interface ReidPolicy {
  /** face-api descriptor distance below which a face counts as re-identified (face-api's own 0.6). */
  threshold: number;
  /** Extra attempts after the first. */
  retries: number;
  /** Each retry lowers the target cosine m by this much (pushes the identity further away). */
  marginStep: number;
  /** Each retry multiplies λ_id by this. */
  lambdaIdFactor: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  /** Content id: sha256 prefix over the model and pool hashes (stable for identical builds). */
  id: string;
  name: string;
  /** True for the pattern-weight demo bundle: its output is NOT photorealistic. */
  demo: boolean;
  /** Generator resolution N (aligned crop side). */
  resolution: number;
  /** W+ layers L = 2·log2(N) − 2. */
  wLayers: number;
  /** Allowed trainable range: any [start, end) with min ≤ start < end ≤ max. */
  trainableRange: { min: number; max: number };
  /** Token grid of the attribute loss [tokens, width] (197 × 768 for FaRL ViT-B/16). */
  tokens: [number, number];
  components: Record<ComponentName, ComponentInfo> & {
    /** human-models recognizers for the privacy check (`<bundle>/human/`); absent in bundles built before. */
    human?: ComponentInfo;
  };
  models: Record<ModelName, ModelFileInfo>;
  defaults: BundleDefaults;
  reid: ReidPolicy;
  pool: PoolInfo | null;
  licenseNotes: string[];
}

export const DEFAULT_REID: ReidPolicy = { threshold: 0.6, retries: 2, marginStep: 0.2, lambdaIdFactor: 2 };

export function defaultBundleDefaults(wLayers: number): BundleDefaults {
  const [s, e] = FALCO_DEFAULTS.layers;
  return {
    steps: FALCO_DEFAULTS.steps,
    lr: FALCO_DEFAULTS.lr,
    lrMilestones: [...FALCO_DEFAULTS.lrMilestones],
    lrGamma: FALCO_DEFAULTS.lrGamma,
    lambdaId: FALCO_DEFAULTS.lambdaId,
    lambdaAttr: FALCO_DEFAULTS.lambdaAttr,
    idMargin: FALCO_DEFAULTS.idMargin,
    layers: [Math.min(s, wLayers - 1), Math.min(e, wLayers)],
    truncation: FALCO_DEFAULTS.truncation,
  };
}

export const LICENSE_NOTES = [
  'StyleGAN2 FFHQ generator (stylegan2_ffhq1024.pth, genforce conversion): NVIDIA Source Code License-NC — non-commercial use only.',
  'e4e encoder (e4e_ffhq_encode.pt): MIT (omertov/encoder4editing); embeds the StyleGAN2 decoder, same NVIDIA restriction.',
  'ArcFace IR-SE50 (model_ir_se50.pth, TreB1eN/InsightFace_Pytorch via pSp): MIT.',
  'FaRL (FaRL-Base-Patch16-LAIONFace20M-ep64.pth): MIT code; trained on LAION-Face, check the data terms before commercial use.',
  'face-api networks (@vladmandic/face-api): MIT.',
];

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await new Promise<void>((res, rej) => {
    createReadStream(path)
      .on('data', (b) => h.update(b))
      .on('end', () => res())
      .on('error', rej);
  });
  return h.digest('hex');
}

/** File info of one written model (+ its external data file when present). */
export async function modelFileInfo(dir: string, name: ModelName): Promise<ModelFileInfo> {
  const file = MODEL_FILES[name];
  const p = join(dir, file);
  const bytes = (await readFile(p)).length;
  const info: ModelFileInfo = { file, sha256: await sha256File(p), bytes };
  const dataPath = `${p}.data`;
  if (existsSync(dataPath)) {
    info.data = {
      file: `${file}.data`,
      sha256: await sha256File(dataPath),
      bytes: (await readFile(dataPath)).length,
    };
  }
  return info;
}

/** Content id over models + pool hashes: same weights + same pool → same id. */
export function contentId(m: Pick<BundleManifest, 'models' | 'pool' | 'name'>): string {
  const h = createHash('sha256');
  h.update(m.name);
  for (const k of Object.keys(MODEL_FILES).sort()) {
    const i = m.models[k as ModelName];
    h.update(`${k}:${i.sha256}:${i.data?.sha256 ?? ''}`);
  }
  if (m.pool) h.update(`pool:${m.pool.sha256.codes}:${m.pool.sha256.features}`);
  return `${m.name}-${h.digest('hex').slice(0, 16)}`;
}

// ------------------------------------------------------------------------------------- validation

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function num(
  o: Record<string, unknown>,
  k: string,
  where: string,
  opts: { int?: boolean; min?: number } = {},
): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new BundleError(`${where}.${k} must be a finite number, got ${JSON.stringify(v)}`);
  if (opts.int && !Number.isInteger(v)) throw new BundleError(`${where}.${k} must be an integer, got ${v}`);
  if (opts.min !== undefined && v < opts.min)
    throw new BundleError(`${where}.${k} must be ≥ ${opts.min}, got ${v}`);
  return v;
}
function str(o: Record<string, unknown>, k: string, where: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !v) throw new BundleError(`${where}.${k} must be a non-empty string`);
  return v;
}
function obj(o: Record<string, unknown>, k: string, where: string): Record<string, unknown> {
  const v = o[k];
  if (!isObj(v)) throw new BundleError(`${where}.${k} must be an object`);
  return v;
}
/** A relative path inside the bundle (no absolute paths, no `..`), so a manifest cannot point outside. */
function relFile(o: Record<string, unknown>, k: string, where: string): string {
  const f = str(o, k, where);
  if (f.startsWith('/') || f.split(/[\\/]/).includes('..'))
    throw new BundleError(`${where}.${k} must be a path inside the bundle, got ${f}`);
  return f;
}

/** Validate parsed manifest JSON (`source` names the file in errors). */
export function parseManifest(json: unknown, source = MANIFEST_FILE): BundleManifest {
  const w = source;
  if (!isObj(json)) throw new BundleError(`${w}: not a JSON object`);
  if (json['format'] !== BUNDLE_FORMAT)
    throw new BundleError(
      `${w}: format is ${JSON.stringify(json['format'])}, this engine reads ${BUNDLE_FORMAT}`,
    );
  const resolution = num(json, 'resolution', w, { int: true, min: 8 });
  if (!Number.isInteger(Math.log2(resolution)))
    throw new BundleError(`${w}.resolution must be a power of two, got ${resolution}`);
  const wLayers = num(json, 'wLayers', w, { int: true, min: 1 });
  if (wLayers !== 2 * Math.log2(resolution) - 2)
    throw new BundleError(
      `${w}.wLayers is ${wLayers}, but a ${resolution}px generator has ${2 * Math.log2(resolution) - 2}`,
    );
  const tr = obj(json, 'trainableRange', w);
  const trainableRange = {
    min: num(tr, 'min', `${w}.trainableRange`, { int: true, min: 0 }),
    max: num(tr, 'max', `${w}.trainableRange`, { int: true, min: 1 }),
  };
  if (trainableRange.max > wLayers || trainableRange.min >= trainableRange.max)
    throw new BundleError(
      `${w}.trainableRange ${JSON.stringify(trainableRange)} is not inside [0, ${wLayers}]`,
    );
  const tokens = json['tokens'];
  if (!Array.isArray(tokens) || tokens.length !== 2 || !tokens.every((t) => Number.isInteger(t) && t > 0))
    throw new BundleError(`${w}.tokens must be [tokens, width]`);
  const comps = obj(json, 'components', w);
  const components = {} as BundleManifest['components'];
  for (const c of ['generator', 'e4e', 'arcface', 'farl', 'faceapi', 'human'] as const) {
    if (c === 'human' && comps[c] === undefined) continue;
    const ci = obj(comps, c, `${w}.components`);
    const sha = str(ci, 'sha256', `${w}.components.${c}`);
    if (!/^[0-9a-f]{64}$/.test(sha))
      throw new BundleError(`${w}.components.${c}.sha256 is not a sha256 hex digest`);
    components[c] = {
      source: str(ci, 'source', `${w}.components.${c}`),
      sha256: sha,
      license: str(ci, 'license', `${w}.components.${c}`),
      ...(typeof ci['note'] === 'string' ? { note: ci['note'] } : {}),
    };
  }
  const ms = obj(json, 'models', w);
  const models = {} as Record<ModelName, ModelFileInfo>;
  for (const m of Object.keys(MODEL_FILES) as ModelName[]) {
    const mi = obj(ms, m, `${w}.models`);
    const info: ModelFileInfo = {
      file: relFile(mi, 'file', `${w}.models.${m}`),
      sha256: str(mi, 'sha256', `${w}.models.${m}`),
      bytes: num(mi, 'bytes', `${w}.models.${m}`, { int: true, min: 1 }),
    };
    if (isObj(mi['data'])) {
      const d = mi['data'];
      info.data = {
        file: relFile(d, 'file', `${w}.models.${m}.data`),
        sha256: str(d, 'sha256', `${w}.models.${m}.data`),
        bytes: num(d, 'bytes', `${w}.models.${m}.data`, { int: true, min: 0 }),
      };
    }
    models[m] = info;
  }
  const d = obj(json, 'defaults', w);
  const dl = d['layers'];
  if (!Array.isArray(dl) || dl.length !== 2 || !dl.every(Number.isInteger))
    throw new BundleError(`${w}.defaults.layers must be [start, end)`);
  const defaults: BundleDefaults = {
    steps: num(d, 'steps', `${w}.defaults`, { int: true, min: 0 }),
    lr: num(d, 'lr', `${w}.defaults`, { min: 0 }),
    lrMilestones: Array.isArray(d['lrMilestones'])
      ? (d['lrMilestones'] as number[]).filter((x) => typeof x === 'number')
      : [],
    lrGamma: num(d, 'lrGamma', `${w}.defaults`, { min: 0 }),
    lambdaId: num(d, 'lambdaId', `${w}.defaults`, { min: 0 }),
    lambdaAttr: num(d, 'lambdaAttr', `${w}.defaults`, { min: 0 }),
    idMargin: num(d, 'idMargin', `${w}.defaults`),
    layers: [dl[0] as number, dl[1] as number],
    truncation: num(d, 'truncation', `${w}.defaults`),
  };
  checkLayers(defaults.layers, trainableRange, `${w}.defaults.layers`);
  const r = obj(json, 'reid', w);
  const reid: ReidPolicy = {
    threshold: num(r, 'threshold', `${w}.reid`, { min: 0 }),
    retries: num(r, 'retries', `${w}.reid`, { int: true, min: 0 }),
    marginStep: num(r, 'marginStep', `${w}.reid`),
    lambdaIdFactor: num(r, 'lambdaIdFactor', `${w}.reid`, { min: 0 }),
  };
  let pool: PoolInfo | null = null;
  if (json['pool'] !== null && json['pool'] !== undefined) {
    const p = obj(json, 'pool', w);
    const sh = obj(p, 'sha256', `${w}.pool`);
    pool = {
      n: num(p, 'n', `${w}.pool`, { int: true, min: 1 }),
      psi: num(p, 'psi', `${w}.pool`),
      seed: num(p, 'seed', `${w}.pool`, { int: true }),
      codes: relFile(p, 'codes', `${w}.pool`),
      features: relFile(p, 'features', `${w}.pool`),
      featureDim: num(p, 'featureDim', `${w}.pool`, { int: true, min: 1 }),
      sha256: {
        codes: str(sh, 'codes', `${w}.pool.sha256`),
        features: str(sh, 'features', `${w}.pool.sha256`),
      },
    };
  }
  return {
    format: BUNDLE_FORMAT,
    id: str(json, 'id', w),
    name: str(json, 'name', w),
    demo: json['demo'] === true,
    resolution,
    wLayers,
    trainableRange,
    tokens: [tokens[0] as number, tokens[1] as number],
    components,
    models,
    defaults,
    reid,
    pool,
    licenseNotes: Array.isArray(json['licenseNotes'])
      ? (json['licenseNotes'] as unknown[]).filter((x): x is string => typeof x === 'string')
      : [],
  };
}

/** A trainable layer range must be integers with min ≤ start < end ≤ max. */
export function checkLayers(
  layers: readonly number[],
  range: { min: number; max: number },
  what = 'layers',
): [number, number] {
  const [s, e] = layers;
  if (
    layers.length !== 2 ||
    !Number.isInteger(s) ||
    !Number.isInteger(e) ||
    s! < range.min ||
    e! > range.max ||
    s! >= e!
  )
    throw new BundleError(
      `${what} must be [start, end) with ${range.min} ≤ start < end ≤ ${range.max}, got ${JSON.stringify(layers)}`,
    );
  return [s!, e!];
}

export async function readManifest(dir: string): Promise<BundleManifest> {
  const p = join(dir, MANIFEST_FILE);
  if (!existsSync(p))
    throw new BundleError(
      `no model bundle at ${dir} (${MANIFEST_FILE} missing); build one with \`npm run models -- demo\` or \`npm run models -- build --falco <dir>\``,
    );
  let json: unknown;
  try {
    json = JSON.parse(await readFile(p, 'utf8'));
  } catch (e) {
    throw new BundleError(`${p}: not valid JSON (${(e as Error).message})`);
  }
  const m = parseManifest(json, p);
  for (const name of Object.keys(MODEL_FILES) as ModelName[]) {
    const f = join(dir, m.models[name].file);
    if (!existsSync(f)) throw new BundleError(`bundle ${dir}: model file ${m.models[name].file} is missing`);
    const data = m.models[name].data;
    if (data && !existsSync(join(dir, data.file)))
      throw new BundleError(`bundle ${dir}: external data ${data.file} is missing`);
  }
  if (m.pool)
    for (const f of [m.pool.codes, m.pool.features])
      if (!existsSync(join(dir, f))) throw new BundleError(`bundle ${dir}: pool file ${f} is missing`);
  return m;
}

export async function writeManifest(dir: string, m: BundleManifest): Promise<void> {
  await writeFile(join(dir, MANIFEST_FILE), `${JSON.stringify(m, null, 2)}\n`);
}
