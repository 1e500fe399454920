/**
 * Bundle publish/verify round trip on s3rver: a demo bundle is verified (hashes, pool, every model loads),
 * uploaded in parallel and downloaded in parallel the way the worker does at start, and the copy verifies;
 * then one object is altered in the bucket (same size, one byte flipped) and the download fails naming it.
 * A bundle without a fake pool is refused before anything is uploaded.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { readManifest, writeManifest } from '../../models/bundle/manifest.js';
import { downloadBundle, uploadBundle, verifyBundle } from '../../models/bundle/transfer.js';

let server: S3rver;
let s3: S3Client;
let work: string;
let bundle: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bundle-transfer-'));
  server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: join(work, 's3') });
  const { port } = await server.run();
  s3 = new S3Client({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // Streamed uploads otherwise go out aws-chunked with a trailing checksum, which real S3 decodes and s3rver
    // stores verbatim.
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  await s3.send(new CreateBucketCommand({ Bucket: 'models' }));
  bundle = join(work, 'demo');
  await buildDemoBundle({ outDir: bundle, poolSize: 4 });
}, 120_000);

afterAll(async () => {
  await server?.close();
  await rm(work, { recursive: true, force: true });
});

describe('bundle publish and download', () => {
  it('round-trips through S3 and detects a corrupted object', async () => {
    const m = await verifyBundle(bundle, { loadModels: true });
    const uploaded: string[] = [];
    const n = await uploadBundle(s3, bundle, 's3://models/bundles/v1', { onFile: (f) => uploaded.push(f) });
    expect(n).toBe(uploaded.length);
    expect(uploaded.at(-1)).toBe('manifest.json'); // last: never a manifest before its files
    expect(uploaded).toContain('step.onnx.data');

    const copy = await downloadBundle(s3, 's3://models/bundles/v1/', join(work, 'copy1'));
    expect(copy.id).toBe(m.id);
    const [a, b] = await Promise.all([
      readFile(join(work, 'copy1', 'step.onnx.data')),
      readFile(join(bundle, 'step.onnx.data')),
    ]);
    expect(a.equals(b)).toBe(true); // Buffer.equals: a deep toEqual on 20 MB walks every index

    // One flipped byte in the stored step weights: same size, different hash.
    const key = 'bundles/v1/step.onnx.data';
    const body = Buffer.from(
      await (
        await s3.send(new GetObjectCommand({ Bucket: 'models', Key: key }))
      ).Body!.transformToByteArray(),
    );
    body[body.length >> 1] ^= 0xff;
    await s3.send(new PutObjectCommand({ Bucket: 'models', Key: key, Body: body }));
    await expect(downloadBundle(s3, 's3://models/bundles/v1', join(work, 'copy2'))).rejects.toThrow(
      /is corrupt:\n {2}step\.onnx\.data: sha256 [0-9a-f]{12}…, the manifest says [0-9a-f]{12}…/,
    );
  }, 180_000);

  it('refuses a bundle without a fake pool (a worker would crash-loop on it)', async () => {
    const m = await readManifest(bundle);
    const nopool = join(work, 'nopool');
    await buildDemoBundle({ outDir: nopool, poolSize: 1 });
    await writeManifest(nopool, { ...(await readManifest(nopool)), pool: null });
    await expect(verifyBundle(nopool)).rejects.toThrow(/has no fake pool: a worker would refuse it/);
    expect(m.pool).not.toBeNull();
  }, 120_000);
});
