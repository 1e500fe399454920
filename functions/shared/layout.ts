/**
 * S3 key layout (contract with cdk/: event notification on `results/`, lifecycle rules per prefix).
 * Keys are built only from validated parts: every builder checks each part against its exact format (ids.ts)
 * and throws otherwise, so no request value can steer a key into another tenant's prefix ("../", "/", "%2F").
 */
import { FORMATS, formatOfExtension, type OutputFormat } from '../pipeline/formats.js';
import { assertId, assertTenant, isId, isTenant } from './ids.js';

export const uploadKey = (tenant: string, uploadId: string) => {
  assertTenant(tenant);
  assertId('upl', uploadId);
  return `uploads/${tenant}/${uploadId}`;
};
/** Prefix of one job's inputs (erasure). */
export const inputPrefix = (tenant: string, jobId: string) => {
  assertTenant(tenant);
  assertId('job', jobId);
  return `inputs/${tenant}/${jobId}/`;
};
export const inputKey = (tenant: string, jobId: string, imageId: string) => {
  assertId('img', imageId);
  return `${inputPrefix(tenant, jobId)}${imageId}`;
};
/** Prefix of one job's results (erasure). */
export const resultPrefix = (tenant: string, jobId: string) => {
  assertTenant(tenant);
  assertId('job', jobId);
  return `results/${tenant}/${jobId}/`;
};
export const reportKey = (tenant: string, jobId: string, imageId: string) => {
  assertTenant(tenant);
  assertId('job', jobId);
  assertId('img', imageId);
  return `reports/${tenant}/${jobId}/${imageId}.json`;
};
export const resultKey = (tenant: string, jobId: string, imageId: string, format: OutputFormat) => {
  assertId('img', imageId);
  const f = FORMATS[format];
  if (!f) throw new Error('refusing to build a result key for an unknown format');
  return `${resultPrefix(tenant, jobId)}${imageId}.${f.extension}`;
};

/** Content type per output format (the one format table lives in pipeline/formats.ts). */
export const CONTENT_TYPES: Record<OutputFormat, string> = {
  jpeg: FORMATS.jpeg.contentType,
  png: FORMATS.png.contentType,
  webp: FORMATS.webp.contentType,
};

/**
 * Parse `results/{tenant}/{jobId}/{imageId}.{ext}`; null for anything else (ignored by completion), including
 * keys whose parts do not have their exact formats.
 */
export function parseResultKey(
  key: string,
): { tenant: string; jobId: string; imageId: string; ext: string; format: OutputFormat } | null {
  const m = /^results\/([^/]+)\/([^/]+)\/([^/.]+)\.([a-z]+)$/.exec(key);
  if (!m) return null;
  const format = formatOfExtension(m[4]);
  if (!format || !isTenant(m[1]) || !isId('job', m[2]) || !isId('img', m[3])) return null;
  return { tenant: m[1], jobId: m[2], imageId: m[3], ext: m[4], format };
}
