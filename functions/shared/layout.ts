/** S3 key layout (contract with cdk/: event notification on `results/`, lifecycle rules per prefix). */
import type { OutputFormat } from '../pipeline/types.js';

export const uploadKey = (tenant: string, uploadId: string) => `uploads/${tenant}/${uploadId}`;
export const inputKey = (tenant: string, jobId: string, imageId: string) =>
  `inputs/${tenant}/${jobId}/${imageId}`;
export const reportKey = (tenant: string, jobId: string, imageId: string) =>
  `reports/${tenant}/${jobId}/${imageId}.json`;
export const resultKey = (tenant: string, jobId: string, imageId: string, format: OutputFormat) =>
  `results/${tenant}/${jobId}/${imageId}.${format === 'jpeg' ? 'jpg' : format}`;

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
};

/** Parse `results/{tenant}/{jobId}/{imageId}.{ext}`; null for anything else (ignored by completion). */
export function parseResultKey(
  key: string,
): { tenant: string; jobId: string; imageId: string; ext: string } | null {
  const m = /^results\/([^/]+)\/([^/]+)\/([^/.]+)\.(jpg|png|webp)$/.exec(key);
  if (!m) return null;
  return { tenant: m[1], jobId: m[2], imageId: m[3], ext: m[4] };
}
