/**
 * Loads the anonymization engine (functions/pipeline/anonymize.ts) for the worker and the local stack. The
 * engine is imported statically, so the worker bundles into one file (esbuild, no TypeScript loader at run
 * time); the stand-in is only accepted where the caller explicitly allows it (the local demo stack), and then
 * loudly.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createAnonymizer } from '../pipeline/anonymize.js';
import type { Anonymizer } from '../pipeline/types.js';
import { ProviderError } from '../../models/engine/runtime.js';
import type { Log } from '../shared/logger.js';
import type { ResourceLimits } from '../shared/limits.js';

export interface EngineStatus {
  /** Where the models run: what a GPU worker must show as 'cuda'. */
  provider: 'cuda' | 'cpu';
  bundleId: string;
  demo: boolean;
}

/** The deployment's limits as the pipeline takes them (decode limits, faces per image, compute budget). */
export function pipelineLimits(l: ResourceLimits) {
  return {
    limits: { maxBytes: l.maxUploadBytes, maxPixels: l.maxPixels, maxDimension: l.maxSide },
    budget: { maxFaces: l.maxFacesPerImage, maxComputeSteps: l.maxComputeSteps },
  };
}

export async function loadRealEngine(
  bundleDir: string,
  log?: Log,
  limits?: ResourceLimits,
): Promise<{ anonymizer: Anonymizer; status: EngineStatus }> {
  const a = await createAnonymizer({
    bundleDir,
    ...(limits ? pipelineLimits(limits) : {}),
    // Every session reports its provider, and a CUDA → CPU fallback ('auto') is a warning, never silent.
    ...(log
      ? {
          engine: {
            log: (m: string) => (/falling back|failed/i.test(m) ? log.warn(m) : log.info(m)),
          },
        }
      : {}),
  });
  const m = a.engine.manifest;
  return {
    anonymizer: a,
    status: {
      provider: a.engine.activeProvider() ?? (await a.engine.provider()),
      bundleId: m.id,
      demo: m.demo,
    },
  };
}

export async function loadEngine(opts: {
  bundleDir: string;
  log: Log;
  /** The deployment's limits, passed to the pipeline (the worker always sets them). */
  limits?: ResourceLimits;
  /** Fallback used when the engine or bundle is missing; null = fail instead. */
  standIn?: () => Promise<Anonymizer>;
}): Promise<{ anonymizer: Anonymizer; real: boolean; status?: EngineStatus }> {
  try {
    if (!existsSync(opts.bundleDir))
      throw new Error(`model bundle not found at ${opts.bundleDir} (build it with: npm run models -- demo)`);
    const { anonymizer, status } = await loadRealEngine(opts.bundleDir, opts.log, opts.limits);
    return { anonymizer, real: true, status };
  } catch (err) {
    // A provider the operator demanded (FALCO_PROVIDER=cuda) and cannot have is never papered over.
    if (!opts.standIn || err instanceof ProviderError) throw err;
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
