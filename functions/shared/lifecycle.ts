/**
 * Image and job state transitions shared by the worker (failures), the completion handler (S3 result
 * events) and the DLQ handler. Every step is idempotent so that at-least-once delivery (SQS, S3 events,
 * Lambda retries) can replay any of them: conditional status transitions, a conditional usage put, and a
 * single conditional "finish" whose winner alone enqueues the webhook.
 */
import { SendMessageBatchCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { ServiceContext } from './context.js';
import {
  getImage,
  getJob,
  getJobWithImages,
  finishJob,
  markImageDone,
  markImageFailed,
  clearBilledImage,
  setWebhookState,
} from './jobs-repo.js';
import { recordUsage } from './usage-repo.js';
import { FORMATS, formatOfExtension } from '../pipeline/formats.js';
import { deleteObject, getObjectBytes } from './storage.js';
import { reportKey as reportKeyOf } from './layout.js';
import { errFields } from './logger.js';
import {
  TERMINAL_IMAGE,
  type ImageItem,
  type ImageMessage,
  type JobItem,
  type WebhookMessage,
} from './records.js';
import type { ImageReport } from '../pipeline/types.js';

/** Reports above this size are stored without per-step losses (DynamoDB items max out at 400 KB). */
const MAX_REPORT_BYTES = 200_000;

/**
 * Put attempt 1 of a finished job's webhook on the queue, then take it out of the outbox (pending → enqueued).
 * A failure anywhere here loses nothing: the job is still in the outbox and the dispatcher sweep retries; a
 * duplicate attempt-1 message is harmless (claimWebhookAttempt lets one through).
 */
export async function enqueueWebhook(
  ctx: ServiceContext,
  job: Pick<JobItem, 'jobId' | 'tenant'>,
): Promise<void> {
  const msg: WebhookMessage = { v: 1, jobId: job.jobId, tenant: job.tenant, attempt: 1 };
  await ctx.clients.sqs.send(
    new SendMessageCommand({ QueueUrl: ctx.cfg.webhooksQueueUrl, MessageBody: JSON.stringify(msg) }),
  );
  await setWebhookState(ctx, job.jobId, { status: 'enqueued' }, ['pending']);
  ctx.log.info('webhook enqueued', { jobId: job.jobId, tenant: job.tenant });
}

/** Finish the job if every image is terminal. Safe to call any number of times from anywhere. */
export async function maybeFinishJob(
  ctx: ServiceContext,
  jobId: string,
): Promise<'finished' | 'open' | 'already' | 'missing'> {
  const data = await getJobWithImages(ctx, jobId);
  if (!data) return 'missing';
  const { job, images } = data;
  if (job.status !== 'queued' && job.status !== 'running') return 'already';
  if (images.length < job.imageCount || !images.every((i) => TERMINAL_IMAGE.includes(i.status)))
    return 'open';
  const status = images.some((i) => i.status === 'done') ? 'completed' : 'failed';
  if (!(await finishJob(ctx, job, status))) return 'already';
  ctx.log.info('job finished', {
    jobId,
    tenant: job.tenant,
    status,
    images: images.length,
    done: images.filter((i) => i.status === 'done').length,
  });
  if (job.webhookUrl) {
    // The outbox already holds the delivery; enqueueing now only saves the sweep's delay.
    await enqueueWebhook(ctx, job).catch((err) =>
      ctx.log.warn('webhook enqueue failed; the outbox sweep will retry', { jobId, ...errFields(err) }),
    );
  }
  return 'finished';
}

function trimReport(report: ImageReport): ImageReport {
  if (JSON.stringify(report).length <= MAX_REPORT_BYTES) return report;
  return { ...report, faces: report.faces.map((f) => ({ ...f, losses: [] })) };
}

/**
 * Handle one result object (S3 ObjectCreated on results/...). Order matters for crash-safety:
 * mark done (conditional) → bill if the image is done (conditional put: once) → delete the original → finish.
 * A replay after a crash at any point redoes only the missing steps.
 */
export async function completeImage(
  ctx: ServiceContext,
  ref: { tenant: string; jobId: string; imageId: string; resultKey: string },
): Promise<'done' | 'duplicate' | 'ignored'> {
  const { tenant, jobId, imageId, resultKey } = ref;
  const job = await getJob(ctx, jobId);
  const image = job ? await getImage(ctx, jobId, imageId) : null;
  const reportKey = reportKeyOf(tenant, jobId, imageId);
  if (!job || !image || job.tenant !== tenant || job.status === 'deleted' || image.status === 'failed') {
    // A result for an erased job, an unknown image, or an image already failed: it must not outlive its job.
    ctx.log.warn('discarding result without a live image', {
      jobId,
      imageId,
      jobStatus: job?.status,
      imageStatus: image?.status,
    });
    await deleteObject(ctx, ctx.cfg.resultsBucket, resultKey);
    await deleteObject(ctx, ctx.cfg.resultsBucket, reportKey);
    return 'ignored';
  }
  let report: ImageReport | undefined;
  const raw = await getObjectBytes(ctx, ctx.cfg.resultsBucket, reportKey);
  if (raw) {
    try {
      report = trimReport(JSON.parse(raw.toString('utf8')) as ImageReport);
    } catch {
      ctx.log.error('report is not valid JSON', { jobId, imageId });
    }
  } else {
    ctx.log.error('result without a report (the worker writes the report first)', { jobId, imageId });
  }
  const format = formatOfExtension(resultKey.slice(resultKey.lastIndexOf('.') + 1)) ?? 'jpeg';
  const contentType = FORMATS[format].contentType;
  const transitioned = await markImageDone(ctx, jobId, imageId, {
    tenant,
    resultKey,
    reportKey,
    contentType,
    report,
  });
  const nowImage = transitioned ? image : await getImage(ctx, jobId, imageId);
  if (transitioned || nowImage?.status === 'done') {
    const charged = await recordUsage(ctx, tenant, job.billingMonth, jobId, imageId);
    if (charged) ctx.log.info('image billed', { jobId, imageId, tenant, month: job.billingMonth });
    await clearBilledImage(ctx, jobId, imageId);
  }
  // Privacy: the original is not needed once a result exists.
  await deleteObject(ctx, ctx.cfg.uploadsBucket, image.inputKey);
  await maybeFinishJob(ctx, jobId);
  return transitioned ? 'done' : 'duplicate';
}

/** Fail one image (customer input, privacy check, or retries exhausted). Never billed. */
export async function failImage(
  ctx: ServiceContext,
  ref: { tenant: string; jobId: string; imageId: string; inputKey?: string },
  code: string,
  detail: string,
): Promise<boolean> {
  // The transition also gives the tenant's in-flight slot back (admission), once.
  const changed = await markImageFailed(ctx, ref.jobId, ref.imageId, code, detail, ref.tenant);
  if (changed) ctx.log.warn('image failed', { jobId: ref.jobId, imageId: ref.imageId, code });
  if (ref.inputKey) await deleteObject(ctx, ctx.cfg.uploadsBucket, ref.inputKey);
  await maybeFinishJob(ctx, ref.jobId);
  return changed;
}

/**
 * Put one message per image on the jobs queue (batches of 10). An image that could not be queued is failed now,
 * unbilled: it would otherwise stay queued forever. Used by job creation and by the sweeper for a job whose
 * creating request died before this (a duplicate message is harmless: the worker skips terminal images).
 */
export async function enqueueImages(ctx: ServiceContext, job: JobItem, items: ImageItem[]): Promise<void> {
  for (let i = 0; i < items.length; i += 10) {
    const chunk = items.slice(i, i + 10);
    const entries = chunk.map((img) => {
      const msg: ImageMessage = {
        v: 1,
        tenant: job.tenant,
        jobId: job.jobId,
        imageId: img.imageId,
        inputKey: img.inputKey,
        options: job.options,
        outputFormat: img.outputFormat,
      };
      return { Id: String(img.index), MessageBody: JSON.stringify(msg) };
    });
    let failed: string[] = [];
    try {
      const out = await ctx.clients.sqs.send(
        new SendMessageBatchCommand({ QueueUrl: ctx.cfg.jobsQueueUrl, Entries: entries }),
      );
      failed = (out.Failed ?? []).map((f) => f.Id!);
    } catch (err) {
      ctx.log.error('enqueue failed', { jobId: job.jobId, error: (err as Error).message });
      failed = entries.map((e) => e.Id);
    }
    // An image that could not be queued would stay "queued" forever: fail it now (not billed).
    for (const id of failed) {
      const img = chunk.find((x) => String(x.index) === id)!;
      await failImage(
        ctx,
        img,
        'enqueue-failed',
        'the image could not be queued for processing; please resubmit',
      );
    }
  }
}
