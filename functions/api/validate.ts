/**
 * Upload validation, API side: the pipeline's decode policy (functions/pipeline/image-io.ts `checkImage`: size →
 * magic bytes → header dimensions before any pixel is decoded → a strict full decode) with the deployment's
 * limits, its typed errors turned into problem details. One policy, so an image the API accepts is one the
 * worker can decode, and every message is worded from this request's own bytes.
 */
import { checkImage } from '../pipeline/image-io.js';
import { InputError, type OutputFormat } from '../pipeline/types.js';
import { ProblemError } from '../shared/problem.js';
import { sniff } from '../pipeline/formats.js';

export interface ValidatedImage {
  format: OutputFormat;
  width: number;
  height: number;
  bytes: number;
}

/** HTTP status of each customer-fixable image error (the slug is the same in the API and the pipeline). */
const STATUS_OF: Record<string, number> = {
  'image-too-large': 413,
  'unsupported-image-type': 415,
};

/** The one sniffer, in the shape the API's tests and callers know: the format, or what the content looks like. */
export function sniffUpload(b: Uint8Array): OutputFormat | { other: string } {
  const s = sniff(b);
  return s.format ?? { other: s.guess };
}

export async function validateImage(
  bytes: Uint8Array,
  limits: { maxBytes: number; maxPixels: number; maxSide: number },
  label: string,
): Promise<ValidatedImage> {
  try {
    const p = await checkImage(bytes, {
      maxBytes: limits.maxBytes,
      maxPixels: limits.maxPixels,
      maxDimension: limits.maxSide,
    });
    return { format: p.format, width: p.width, height: p.height, bytes: bytes.length };
  } catch (err) {
    if (err instanceof InputError)
      throw new ProblemError(STATUS_OF[err.code] ?? 422, err.code, `${label}: ${err.message}`);
    throw err;
  }
}
