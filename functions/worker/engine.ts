/**
 * Picks the anonymization engine. The real one (functions/pipeline/anonymize.ts, `createAnonymizer`) is loaded
 * by dynamic import so the service builds and runs before the engine exists; the stand-in is only accepted
 * where the caller explicitly allows it (the local demo stack), and then loudly.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { Anonymizer } from '../pipeline/types.js';
import type { Log } from '../shared/logger.js';
import type { ResourceLimits } from '../shared/limits.js';

const here = dirname(fileURLToPath(import.meta.url));

export function engineModulePath(): string | null {
  for (const name of ['anonymize.ts', 'anonymize.js']) {
    const p = join(here, '..', 'pipeline', name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** The deployment's limits as the pipeline takes them (decode limits, faces per image, compute budget). */
export function pipelineLimits(l: ResourceLimits) {
  return {
    limits: { maxBytes: l.maxUploadBytes, maxPixels: l.maxPixels, maxDimension: l.maxSide },
    budget: { maxFaces: l.maxFacesPerImage, maxComputeSteps: l.maxComputeSteps },
  };
}

export async function loadRealEngine(bundleDir: string, limits?: ResourceLimits): Promise<Anonymizer> {
  const path = engineModulePath();
  if (!path) throw new Error('the anonymization engine (functions/pipeline/anonymize.ts) is not present');
  const mod = (await import(pathToFileURL(path).href)) as {
    createAnonymizer?: (
      o: { bundleDir: string } & Partial<ReturnType<typeof pipelineLimits>>,
    ) => Promise<Anonymizer>;
  };
  if (typeof mod.createAnonymizer !== 'function') throw new Error(`${path} does not export createAnonymizer`);
  return mod.createAnonymizer({ bundleDir, ...(limits ? pipelineLimits(limits) : {}) });
}

export async function loadEngine(opts: {
  bundleDir: string;
  log: Log;
  /** The deployment's limits, passed to the pipeline (the worker always sets them). */
  limits?: ResourceLimits;
  /** Fallback used when the engine or bundle is missing; null = fail instead. */
  standIn?: () => Promise<Anonymizer>;
}): Promise<{ anonymizer: Anonymizer; real: boolean }> {
  try {
    if (!existsSync(opts.bundleDir))
      throw new Error(`model bundle not found at ${opts.bundleDir} (build it with: npm run models -- demo)`);
    return { anonymizer: await loadRealEngine(opts.bundleDir, opts.limits), real: true };
  } catch (err) {
    if (!opts.standIn) throw err;
    const line = '!'.repeat(100);
    opts.log.warn(
      `${line}\nUSING THE TEST STAND-IN ANONYMIZER (it only inverts colours in a box; it does NOT anonymize faces).\nReason: ${(err as Error).message}\n${line}`,
    );
    return { anonymizer: await opts.standIn(), real: false };
  }
}

/** Copy s3://bucket/prefix/** into a local directory (the ECS task's model bundle). */
export async function downloadBundle(s3: S3Client, uri: string, dest: string): Promise<string> {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new Error(`BUNDLE_URI must look like s3://bucket/prefix, got "${uri}"`);
  const [, bucket, rawPrefix] = m;
  const prefix = rawPrefix && !rawPrefix.endsWith('/') ? rawPrefix + '/' : rawPrefix;
  let token: string | undefined;
  let files = 0;
  do {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const obj of out.Contents ?? []) {
      if (!obj.Key || obj.Key.endsWith('/')) continue;
      const rel = relative(prefix || '.', obj.Key);
      if (rel.startsWith('..')) continue;
      const file = join(dest, rel);
      await mkdir(dirname(file), { recursive: true });
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: obj.Key }));
      await writeFile(file, await got.Body!.transformToByteArray());
      files++;
    }
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  if (files === 0) throw new Error(`no bundle files under ${uri}`);
  return dest;
}
