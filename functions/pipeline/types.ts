/**
 * The contract between the anonymization engine (models + pipeline stages) and its callers
 * (the ECS worker, the batch CLI, the embedded local stack). Kept in one small file so the service
 * can be built and tested against it before the engine is finished.
 */

export type OutputFormat = 'jpeg' | 'png' | 'webp';

/** Per-call options. Every field is optional; defaults come from the model bundle manifest (FALCO's). */
export interface AnonymizeOptions {
  /** ArcFace cosine margin m in |cos(id(G(w)), id(x)) - m|. FALCO default 0.0. */
  idMargin?: number;
  /** Adam steps per face. FALCO default 50. */
  steps?: number;
  /** Identity loss weight λ_id. FALCO default 10. */
  lambdaId?: number;
  /** Attribute loss weight λ_attr. FALCO default 0.1. */
  lambdaAttr?: number;
  /** Trainable W+ layer range [start, end) taken from the fake code. FALCO default [3, 8). */
  layers?: [number, number];
  /** Adam learning rate. FALCO default 0.01. */
  lr?: number;
  /** Seed for every random choice (ties in the fake pool, noise). */
  seed?: number;
  /** Output encoding; defaults to the input's format. */
  format?: OutputFormat;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface FaceReport {
  index: number;
  box: Box;
  score: number;
  /** loss, id, attr before each optimization step. */
  losses: Array<[number, number, number]>;
  /** Independent check (face-api 128-D recognizer, not used by the optimization). */
  identityDistance: number;
  reidentified: boolean;
  /** Attempts made (a re-identified face is retried with a larger margin). */
  attempts: number;
  timingsMs: Record<string, number>;
}

export interface ImageReport {
  width: number;
  height: number;
  format: OutputFormat;
  faces: FaceReport[];
  /** 'ok' when every face was anonymized and none is re-identified; 'no_faces' when none was found. */
  outcome: 'ok' | 'no_faces';
  bundle: { id: string; demo: boolean };
  timingsMs: Record<string, number>;
}

export interface AnonymizeResult {
  image: Buffer;
  contentType: string;
  report: ImageReport;
}

export interface Progress {
  /** 0..1 over the whole image. */
  fraction: number;
  stage: 'decode' | 'detect' | 'align' | 'invert' | 'optimize' | 'render' | 'paste' | 'encode' | 'verify';
  face?: number;
  faces?: number;
  step?: number;
  steps?: number;
}

/** Thrown for inputs the customer must fix (maps to HTTP 4xx / a non-retryable worker failure). */
export class InputError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'InputError';
  }
}

/** Thrown when a face stays re-identifiable after every retry: the image fails and is not billed. */
export class PrivacyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PrivacyError';
  }
}

export interface Anonymizer {
  anonymize(
    input: Uint8Array,
    options?: AnonymizeOptions,
    onProgress?: (p: Progress) => void,
  ): Promise<AnonymizeResult>;
  close(): Promise<void>;
}
