/** Small S3 helpers shared by the API, worker and completion. */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import type { ServiceContext } from './context.js';
import { isNotFound } from './aws.js';
import { ProblemError } from './problem.js';

export async function getObjectBytes(
  ctx: ServiceContext,
  bucket: string,
  key: string,
  maxBytes = Infinity,
): Promise<Buffer | null> {
  try {
    const out = await ctx.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (out.ContentLength !== undefined && out.ContentLength > maxBytes) {
      // Refuse before reading the body so an oversized object never sits in memory.
      if (out.Body && 'destroy' in out.Body) (out.Body as { destroy: () => void }).destroy();
      throw new ProblemError(
        413,
        'image-too-large',
        `object is ${out.ContentLength} bytes; the limit is ${maxBytes} bytes`,
      );
    }
    const bytes = await out.Body!.transformToByteArray();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

export async function putObject(
  ctx: ServiceContext,
  bucket: string,
  key: string,
  body: Uint8Array | string,
  contentType: string,
): Promise<void> {
  await ctx.clients.s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }),
  );
}

export async function deleteObject(ctx: ServiceContext, bucket: string, key: string): Promise<void> {
  try {
    await ctx.clients.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** Delete every object under a prefix, one by one (jobs are small; DeleteObjects needs checksums some emulators reject). */
export async function deletePrefix(ctx: ServiceContext, bucket: string, prefix: string): Promise<number> {
  let token: string | undefined;
  let n = 0;
  do {
    const out = await ctx.clients.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const obj of out.Contents ?? []) {
      if (obj.Key) {
        await deleteObject(ctx, bucket, obj.Key);
        n++;
      }
    }
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return n;
}
