/**
 * Every limit of the service, in one place. Read by the API's zod schemas (option ranges), the upload
 * validation (bytes, pixels, longest side), the admission checks (images per job, in flight per tenant, job
 * creation rate, compute budget), the pipeline (`resolveOptions`, decode limits, faces per image) and the
 * worker (which passes the deployment's limits to the pipeline), and published in the OpenAPI document
 * (`x-limits`) so customers see the numbers that are enforced.
 *
 * Two kinds:
 *  - option ranges (`OPTION_RANGES`): part of the API contract, fixed in code;
 *  - resource limits (`ResourceLimits`): deployment settings, overridable per stage through the environment
 *    (`MAX_*`, `JOBS_PER_MINUTE`); the defaults are the production values.
 * No module may hard-code a number that is listed here.
 */

/** Inclusive numeric ranges of the per-job options (the API's zod schema and the pipeline's resolveOptions). */
export const OPTION_RANGES = Object.freeze({
  idMargin: { min: -1, max: 1 },
  steps: { min: 1, max: 500 },
  lambdaId: { min: 0, max: 1000 },
  lambdaAttr: { min: 0, max: 1000 },
  /** lr must be > 0; 1e-6 is the smallest step that still moves a float32 latent. */
  lr: { min: 1e-6, max: 1 },
  /** uint32: every seed a 32-bit hash accepts. */
  seed: { min: 0, max: 2 ** 32 - 1 },
  /** W+ layer indices, [start, end) with start < end. */
  layers: { min: 0, max: 18 },
} as const);

/**
 * Attempts per face the compute budget assumes when a job is created (the bundle's 1 + reid.retries; FALCO's
 * bundles use 2 retries). The worker checks the real number from the bundle it runs.
 */
export const ASSUMED_ATTEMPTS_PER_FACE = 3;

export interface ResourceLimits {
  /** Largest image accepted through a presigned upload. */
  maxUploadBytes: number;
  /** Largest image accepted inline in a multipart POST /v1/jobs (Lambda's 6 MB request cap, base64 overhead). */
  maxInlineBytes: number;
  /** Largest inline multipart body in total: API Gateway base64-encodes binary bodies into the 6 MB Lambda event. */
  maxInlineTotalBytes: number;
  /** width × height above which an image is refused before decoding (decompression-bomb guard). */
  maxPixels: number;
  /** Longest side in pixels (thin images with few pixels still cost a huge detector pyramid). */
  maxSide: number;
  /** Faces one image may hold; above it the image fails (unbilled) instead of running for hours. */
  maxFacesPerImage: number;
  maxImagesPerJob: number;
  /**
   * Compute budget per image, in optimisation steps: faces × steps × attempts must stay within it. Checked at
   * job creation for one face (steps × ASSUMED_ATTEMPTS_PER_FACE) and by the worker once faces are counted.
   */
  maxComputeSteps: number;
  /** Images of one tenant queued or processing at once (admission control, a DynamoDB conditional counter). */
  maxInFlightImages: number;
  /** Jobs one tenant may create per minute (a DynamoDB conditional counter shared by every API instance). */
  jobsPerMinute: number;
}

export const DEFAULT_RESOURCE_LIMITS: Readonly<ResourceLimits> = Object.freeze({
  maxUploadBytes: 25 * 1024 * 1024,
  maxInlineBytes: 4 * 1024 * 1024,
  maxInlineTotalBytes: 4 * 1024 * 1024,
  maxPixels: 40_000_000,
  maxSide: 16_384,
  maxFacesPerImage: 50,
  maxImagesPerJob: 20,
  // 50 steps × 3 attempts × ~66 faces, or 500 steps × 3 attempts × 6 faces.
  maxComputeSteps: 10_000,
  maxInFlightImages: 200,
  jobsPerMinute: 120,
});

const ENV_NAMES: Record<keyof ResourceLimits, string> = {
  maxUploadBytes: 'MAX_UPLOAD_BYTES',
  maxInlineBytes: 'MAX_INLINE_BYTES',
  maxInlineTotalBytes: 'MAX_INLINE_TOTAL_BYTES',
  maxPixels: 'MAX_PIXELS',
  maxSide: 'MAX_SIDE',
  maxFacesPerImage: 'MAX_FACES_PER_IMAGE',
  maxImagesPerJob: 'MAX_IMAGES_PER_JOB',
  maxComputeSteps: 'MAX_COMPUTE_STEPS',
  maxInFlightImages: 'MAX_IN_FLIGHT_IMAGES',
  jobsPerMinute: 'JOBS_PER_MINUTE',
};

/** The resource limits of this deployment: defaults, overridden by positive integers from the environment. */
export function loadLimits(env: NodeJS.ProcessEnv = process.env): ResourceLimits {
  const out = { ...DEFAULT_RESOURCE_LIMITS };
  for (const [k, name] of Object.entries(ENV_NAMES) as Array<[keyof ResourceLimits, string]>) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`environment variable ${name} must be a positive integer, got "${raw}"`);
    out[k] = v;
  }
  return out;
}

/**
 * Megapixels of `px`, with as many decimals as it takes to tell it apart from `limitPx` (40 001 000 px against
 * a 40 MP limit reads "40.001 MP", not "40.0 MP"), and the limit with the same precision.
 */
export function formatMegapixels(px: number, limitPx: number): { value: string; limit: string } {
  for (let d = 1; d <= 6; d++) {
    const value = (px / 1e6).toFixed(d);
    const limit = (limitPx / 1e6).toFixed(d);
    if (value !== limit || d === 6) return { value: `${value} MP`, limit: `${limit} MP` };
  }
  /* c8 ignore next */
  throw new Error('unreachable');
}

/** FALCO's default steps per face (the bundles' `defaults.steps`), assumed when a job does not set `steps`. */
export const FALCO_DEFAULT_STEPS = 50;
