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
  /**
   * Faces too small or too turned for the generator (unreliable landmarks, box below the size at which FFHQ
   * alignment makes sense): how they are covered. Issue #10; default chosen by measurement (a safe one).
   */
  smallFaces?: FaceMethod;
  /** A face still recognisable after every retry: fail the image, or obscure that face and return it. */
  onRecognisable?: RecognisablePolicy;
  /** A face found on the output by the residual scan that overlaps no replaced region. */
  onResidual?: ResidualPolicy;
}

/** How one face was covered. 'falco' = replaced by a generated face; the others are fallbacks. */
export type FaceMethod = 'falco' | 'blur' | 'pixelate' | 'fill';
export type RecognisablePolicy = 'fail' | 'obscure';
export type ResidualPolicy = 'anonymize' | 'fail';

/** One independent recognizer's verdict on original vs anonymized (shares no weights with the optimisation). */
export interface RecognizerVerdict {
  /** e.g. 'faceapi-128', 'faceres-deep'. */
  recognizer: string;
  distance: number;
  /** Calibrated on identity pairs from the samples (see the calibration bench). */
  threshold: number;
  /** Measured false-match rate of this recognizer at `threshold` on the calibration pairs. */
  falseMatchRate: number;
  /** distance < threshold: this recognizer still says "same person". */
  recognisable: boolean;
}

/** What FALCO promises to keep, measured by nets independent of the optimisation. */
export interface FaceAttributes {
  age: number;
  gender: 'male' | 'female';
  genderScore: number;
  /** Most likely expression (face-api's 7 classes) and its probability. */
  expression: string;
  expressionScore: number;
  /** Every expression class's probability (face-api's 7: neutral, happy, sad, angry, fearful, disgusted, surprised). */
  expressions?: Record<string, number>;
  /** Head pose from the 68 landmarks, degrees. */
  pose: { yaw: number; pitch: number; roll: number };
}

/** How far the anonymized face moved from the original on what FALCO promises to keep (attributeChange). */
export interface AttributeChange {
  /** anonymized − original, years. */
  ageDelta: number;
  genderKept: boolean;
  expressionKept: boolean;
  /** Largest of |Δyaw|, |Δpitch|, |Δroll|, degrees. */
  poseDeltaDeg: number;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * What confirmed a face the SSD scored under its threshold: BlazeFace's probability at the box, and for a face
 * the SSD did not see at all (BlazeFace found it; `score` 0) FaceMesh's face flag too.
 */
export interface FaceConfirmation {
  detector: 'blazeface';
  score: number;
  faceMesh?: number;
}

export interface FaceReport {
  index: number;
  box: Box;
  /** The SSD's score (below the detection threshold when `confirmedBy` is set). */
  score: number;
  /** The second detector family that confirmed a face the SSD scored under its threshold, and its score. */
  confirmedBy?: FaceConfirmation;
  /** loss, id, attr before each optimization step. */
  losses: Array<[number, number, number]>;
  /** Independent check (face-api 128-D recognizer, not used by the optimization). */
  identityDistance: number;
  reidentified: boolean;
  /** Attempts made (a re-identified face is retried with a larger margin). */
  attempts: number;
  timingsMs: Record<string, number>;
  /** How the face was covered (issue #10). */
  method?: FaceMethod;
  /** Why a fallback method was used: 'small', 'landmarks', 'recognisable', 'residual', … */
  methodReason?: string;
  /** Every independent recognizer's verdict; `reidentified` above is the policy's combined verdict. */
  recognizers?: RecognizerVerdict[];
  /**
   * Utility check: the same attributes measured on the original and on the anonymized face (the output's
   * pixels), and the change. Only for faces replaced by FALCO (`method` 'falco'); absent for fallback-covered
   * faces, whose utility is given up by design (functions/pipeline/anonymize.ts says why).
   */
  attributes?: { original: FaceAttributes; anonymized: FaceAttributes; change: AttributeChange };
  /** Found on the output by the residual scan (overlapped no replaced region) and covered then. */
  residual?: boolean;
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
  /** Faces found by detection (before the residual scan). */
  facesFound?: number;
  /** Faces the residual scan found on the output that overlapped no replaced region. */
  residualFaces?: number;
  /**
   * Where the models ran for this image ('cuda' or 'cpu'; issue #13): a GPU worker that fell back to its CPU
   * shows here, per image, not only in the task's start-up log.
   */
  provider?: 'cuda' | 'cpu';
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
  /** `signal` aborts the work between optimisation steps (job erased, worker stopping); it rejects with its reason. */
  anonymize(
    input: Uint8Array,
    options?: AnonymizeOptions,
    onProgress?: (p: Progress) => void,
    signal?: AbortSignal,
  ): Promise<AnonymizeResult>;
  close(): Promise<void>;
}
