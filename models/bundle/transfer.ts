/**
 * Moving a model bundle between a directory and S3, and proving it intact on both ends (issue #13).
 *
 *  - verifyBundle: the manifest parses, a fake pool is there (a worker refuses a bundle without one), every
 *    model, external-data and pool file has the size and sha256 the manifest records, and (optionally) every
 *    model loads once in onnxruntime.
 *  - uploadBundle: files streamed from disk in parallel; manifest.json last, so a worker that lists the prefix
 *    mid-upload never sees a manifest whose files are not all there.
 *  - downloadBundle: the worker's cold start: objects streamed to disk in parallel (never held whole in memory:
 *    the production step model's weights are ~1 GB), then verified against the manifest's hashes.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { MODEL_FILES, type ModelName } from '../falco/contract.js';
import { BundleError, MANIFEST_FILE, readManifest, sha256File, type BundleManifest } from './manifest.js';

/** Objects in flight at once: enough to fill an instance's S3 bandwidth with a few large files. */
export const DEFAULT_CONCURRENCY = 8;

export function parseBundleUri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new BundleError(`a bundle URI must look like s3://bucket/prefix, got "${uri}"`);
  const raw = m[2]!;
  return { bucket: m[1]!, prefix: raw && !raw.endsWith('/') ? `${raw}/` : raw };
}

/** Run `f` over `items` with at most `n` at a time; the first failure rejects (the others finish first). */
async function parallel<T>(items: readonly T[], n: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const lane = async () => {
    while (next < items.length && errors.length === 0) {
      const item = items[next++]!;
      try {
        await f(item);
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, lane));
  if (errors.length) throw errors[0];
}

/** Every file the manifest vouches for, with its expected size and sha256. */
function checkedFiles(m: BundleManifest): Array<{ file: string; sha256: string; bytes?: number }> {
  const out: Array<{ file: string; sha256: string; bytes?: number }> = [];
  for (const name of Object.keys(MODEL_FILES) as ModelName[]) {
    const info = m.models[name];
    out.push({ file: info.file, sha256: info.sha256, bytes: info.bytes });
    if (info.data) out.push({ file: info.data.file, sha256: info.data.sha256, bytes: info.data.bytes });
  }
  if (m.pool) {
    out.push({ file: m.pool.codes, sha256: m.pool.sha256.codes });
    out.push({ file: m.pool.features, sha256: m.pool.sha256.features });
  }
  return out;
}

export interface VerifyOptions {
  /** Create an onnxruntime session for every model once (catches a file that hashes right but cannot load). */
  loadModels?: boolean;
  concurrency?: number;
}

export async function verifyBundle(dir: string, o: VerifyOptions = {}): Promise<BundleManifest> {
  const m = await readManifest(dir);
  if (!m.pool)
    throw new BundleError(
      `bundle ${dir} has no fake pool: a worker would refuse it; add one with \`npm run models -- pool --bundle ${dir} --n 10000\``,
    );
  const bad: string[] = [];
  await parallel(checkedFiles(m), o.concurrency ?? 4, async (f) => {
    const p = join(dir, f.file);
    const size = (await stat(p)).size;
    if (f.bytes !== undefined && size !== f.bytes) {
      bad.push(`${f.file}: ${size} bytes, the manifest says ${f.bytes}`);
      return;
    }
    const sha = await sha256File(p);
    if (sha !== f.sha256)
      bad.push(`${f.file}: sha256 ${sha.slice(0, 12)}…, the manifest says ${f.sha256.slice(0, 12)}…`);
  });
  if (bad.length) throw new BundleError(`bundle ${dir} is corrupt:\n  ${bad.sort().join('\n  ')}`);
  if (o.loadModels) {
    const { Session } = await import('../engine/runtime.js');
    for (const name of Object.keys(MODEL_FILES) as ModelName[]) {
      const s = await Session.create(join(dir, m.models[name].file), { provider: 'cpu' }).catch(
        (e: unknown) => {
          throw new BundleError(
            `bundle ${dir}: ${m.models[name].file} does not load: ${(e as Error).message}`,
          );
        },
      );
      await s.release();
    }
  }
  return m;
}

async function listFiles(dir: string): Promise<string[]> {
  const ents = await readdir(dir, { withFileTypes: true, recursive: true });
  return ents.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

/** Upload a verified bundle directory to `uri` (parallel, streamed); returns the number of objects. */
export async function uploadBundle(
  s3: S3Client,
  dir: string,
  uri: string,
  o: { concurrency?: number; onFile?: (file: string, bytes: number) => void } = {},
): Promise<number> {
  const { bucket, prefix } = parseBundleUri(uri);
  const files = (await listFiles(dir)).filter((f) => f !== MANIFEST_FILE);
  const put = async (rel: string) => {
    const p = join(dir, rel);
    const bytes = (await stat(p)).size;
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: prefix + rel.split(sep).join('/'),
        Body: createReadStream(p),
        ContentLength: bytes,
      }),
    );
    o.onFile?.(rel, bytes);
  };
  await parallel(files, o.concurrency ?? DEFAULT_CONCURRENCY, put);
  await put(MANIFEST_FILE);
  return files.length + 1;
}

/**
 * Download s3://bucket/prefix/** into `dest` (parallel, streamed to disk) and verify it against its manifest.
 * Any missing, truncated or altered model or pool file fails here, at the worker's start, naming the file.
 */
export async function downloadBundle(
  s3: S3Client,
  uri: string,
  dest: string,
  o: { concurrency?: number } = {},
): Promise<BundleManifest> {
  const { bucket, prefix } = parseBundleUri(uri);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const obj of out.Contents ?? []) if (obj.Key && !obj.Key.endsWith('/')) keys.push(obj.Key);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  if (keys.length === 0) throw new BundleError(`no bundle files under ${uri}`);
  await parallel(keys, o.concurrency ?? DEFAULT_CONCURRENCY, async (key) => {
    const rel = key.slice(prefix.length);
    // Keys come from the bucket: never let one escape the destination directory.
    if (!rel || rel.split('/').some((p) => p === '..' || p === ''))
      throw new BundleError(`refusing object key ${key}`);
    const file = join(dest, ...rel.split('/'));
    await mkdir(dirname(file), { recursive: true });
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await pipeline(got.Body as Readable, createWriteStream(file));
  });
  return verifyBundle(dest);
}
