/** The job JSON returned by the API: stored items plus short-lived presigned result/report URLs. */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { z } from '@hono/zod-openapi';
import type { ServiceContext } from '../shared/context.js';
import type { ImageItem, JobItem } from '../shared/records.js';
import { imageCounts, publicJobStatus } from '../shared/views.js';
import { waitingForWorker } from '../shared/fleet.js';
import type { JobSchema, JobSummarySchema } from './schemas.js';

type Job = z.infer<typeof JobSchema>;

export function jobSummary(job: JobItem): z.infer<typeof JobSummarySchema> {
  return {
    id: job.jobId,
    object: 'job',
    status: publicJobStatus(job),
    createdAt: job.createdAt,
    completedAt: job.completedAt ?? null,
    imageCount: job.imageCount,
  };
}

export async function jobView(ctx: ServiceContext, job: JobItem, images: ImageItem[]): Promise<Job> {
  const expiresIn = ctx.cfg.presignSeconds;
  const expiresAt = new Date(ctx.now() + expiresIn * 1000).toISOString();
  const sign = (key: string) =>
    getSignedUrl(ctx.clients.s3, new GetObjectCommand({ Bucket: ctx.cfg.resultsBucket, Key: key }), {
      expiresIn,
    });
  // Only asked when something waits: a queued image while no GPU worker runs is a cold start, not a stall.
  const waiting = images.some((i) => i.status === 'queued')
    ? await waitingForWorker(ctx, job.createdAt)
    : null;
  const views = await Promise.all(
    images.map(async (i) => ({
      id: i.imageId,
      index: i.index,
      filename: i.filename ?? null,
      status: i.status,
      progress: i.status === 'done' ? 1 : (i.progress ?? 0),
      stage: i.status === 'queued' && waiting ? waiting.stage : (i.stage ?? null),
      ...(i.status === 'queued' && waiting ? { estimatedWaitSeconds: waiting.estimatedWaitSeconds } : {}),
      input: { format: i.inputFormat, width: i.width, height: i.height, bytes: i.inputBytes },
      result:
        i.status === 'done' && i.resultKey
          ? {
              url: await sign(i.resultKey),
              contentType: i.contentType ?? 'application/octet-stream',
              expiresAt,
            }
          : null,
      reportUrl: i.status === 'done' && i.reportKey ? await sign(i.reportKey) : null,
      report: (i.report as Job['images'][number]['report']) ?? null,
      error: i.error ?? null,
    })),
  );
  return {
    id: job.jobId,
    object: 'job',
    status: publicJobStatus(job),
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    completedAt: job.completedAt ?? null,
    options: job.options,
    webhook: job.webhookUrl
      ? { url: job.webhookUrl, status: job.webhookStatus, attempts: job.webhookAttempts ?? 0 }
      : null,
    counts: imageCounts(images),
    progress: views.length ? views.reduce((s, v) => s + v.progress, 0) / views.length : 0,
    images: views,
  };
}
