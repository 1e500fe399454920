/**
 * The scheduled sweeper (EventBridge, every minute on AWS; a timer in the local stack). Three jobs, each a
 * backstop for an event that may never come:
 *  - outbox: a finished job's webhook still `pending` after OUTBOX_GRACE_SECONDS lost its eager enqueue (the
 *    finisher crashed or SQS refused): enqueue it now. The outbox entry was written with the job's final state,
 *    so no finished job can miss its webhook.
 *  - reconciler: an image `processing` with no progress for RECONCILE_AFTER_SECONDS — its worker is gone. If its
 *    result is in S3 (the completion event was lost) it is completed from S3; if not, it is re-queued once and
 *    failed unbilled the second time.
 *  - unqueued: a job whose creating request died between writing it and queueing its images (enqueuePending
 *    still set once IDEMPOTENCY_LOCK_SECONDS passed, which outlives the API function): its images are queued now;
 *  - stragglers: open jobs whose images are all terminal (the finishing step died) are finished;
 *  - orphaned originals (a request died between storing inputs and writing its job) are deleted;
 *  - retention (local stack only; AWS has TTL and bucket lifecycle rules): expired items and objects go.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DeleteCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { ServiceContext } from '../shared/context.js';
import {
  getImage,
  getJob,
  getJobWithImages,
  markJobEnqueued,
  listOpenJobs,
  listOutbox,
  listProcessingSince,
  requeueStalledImage,
} from '../shared/jobs-repo.js';
import {
  completeImage,
  enqueueImages,
  enqueueWebhook,
  failImage,
  maybeFinishJob,
} from '../shared/lifecycle.js';
import { errFields } from '../shared/logger.js';
import { parseResultKey } from '../shared/layout.js';
import { deleteObject } from '../shared/storage.js';
import type { ImageMessage } from '../shared/records.js';

export interface SweepSummary {
  outbox: number;
  completed: number;
  requeued: number;
  failed: number;
  expired: number;
  orphans: number;
  finished: number;
  unqueued: number;
  errors: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

async function findResult(ctx: ServiceContext, tenant: string, jobId: string, imageId: string) {
  const out = await ctx.clients.s3.send(
    new ListObjectsV2Command({
      Bucket: ctx.cfg.resultsBucket,
      Prefix: `results/${tenant}/${jobId}/${imageId}.`,
    }),
  );
  return (out.Contents ?? []).map((o) => o.Key!).find((k) => parseResultKey(k)?.imageId === imageId);
}

export async function sweepOutbox(ctx: ServiceContext, s: SweepSummary): Promise<void> {
  const before = iso(ctx.now() - ctx.cfg.outboxGraceSeconds * 1000);
  for (const jobId of await listOutbox(ctx, before)) {
    try {
      const job = await getJob(ctx, jobId);
      if (!job || job.webhookStatus !== 'pending') continue;
      ctx.log.warn('outbox: enqueueing a webhook whose eager enqueue was lost', { jobId });
      await enqueueWebhook(ctx, job);
      s.outbox++;
    } catch (err) {
      s.errors++;
      ctx.log.error('outbox sweep failed for a job', { jobId, ...errFields(err) });
    }
  }
}

export async function reconcile(ctx: ServiceContext, s: SweepSummary): Promise<void> {
  const staleBefore = iso(ctx.now() - ctx.cfg.reconcileAfterSeconds * 1000);
  for (const { jobId, imageId } of await listProcessingSince(ctx, staleBefore)) {
    try {
      const image = await getImage(ctx, jobId, imageId);
      // Done but never billed (the completion died between the two writes): finish the completion.
      if (image?.status === 'done' && image.resultKey) {
        await completeImage(ctx, { tenant: image.tenant, jobId, imageId, resultKey: image.resultKey });
        s.completed++;
        continue;
      }
      // A live worker writes progress at least every few seconds: its image is not stalled.
      if (!image || image.status !== 'processing' || image.updatedAt >= staleBefore) continue;
      const resultKey = await findResult(ctx, image.tenant, jobId, imageId);
      if (resultKey) {
        ctx.log.warn('reconciler: completing an image whose completion event was lost', { jobId, imageId });
        await completeImage(ctx, { tenant: image.tenant, jobId, imageId, resultKey });
        s.completed++;
        continue;
      }
      const job = await getJob(ctx, jobId);
      if ((image.reconciled ?? 0) >= 1 || !job || job.status === 'deleted') {
        await failImage(
          ctx,
          image,
          'processing-stalled',
          'processing stalled twice without a result; not billed',
        );
        s.failed++;
        continue;
      }
      // Message first, state second: a crash between them leaves a duplicate message (harmless), never a
      // queued image that no message will ever pick up.
      const msg: ImageMessage = {
        v: 1,
        tenant: image.tenant,
        jobId,
        imageId,
        inputKey: image.inputKey,
        options: job.options,
        outputFormat: image.outputFormat,
      };
      await ctx.clients.sqs.send(
        new SendMessageCommand({ QueueUrl: ctx.cfg.jobsQueueUrl, MessageBody: JSON.stringify(msg) }),
      );
      if (await requeueStalledImage(ctx, jobId, imageId, staleBefore)) {
        ctx.log.warn('reconciler: re-queued a stalled image', { jobId, imageId });
        s.requeued++;
      }
    } catch (err) {
      s.errors++;
      ctx.log.error('reconciling an image failed', { jobId, imageId, ...errFields(err) });
    }
  }
}

/**
 * Originals nobody will delete: a request that died between storing its inputs and writing its job (API timeout,
 * crash), or an image whose terminal step died before deleting its original. Only objects older than
 * ORPHAN_INPUT_SECONDS are looked at, so a request still in flight is never touched. Privacy promise: originals
 * go as soon as nothing needs them, not only when the 4-day lifecycle rule fires.
 */
export async function sweepOrphanInputs(ctx: ServiceContext, s: SweepSummary): Promise<void> {
  const out = await ctx.clients.s3.send(
    new ListObjectsV2Command({ Bucket: ctx.cfg.uploadsBucket, Prefix: 'inputs/', MaxKeys: 1000 }),
  );
  const jobs = new Map<string, Awaited<ReturnType<typeof getJob>>>();
  for (const o of out.Contents ?? []) {
    if (!o.Key || !o.LastModified || ctx.now() - o.LastModified.getTime() < ctx.cfg.orphanInputSeconds * 1000)
      continue;
    const [, , jobId, imageId] = o.Key.split('/');
    if (!jobId || !imageId) continue;
    try {
      if (!jobs.has(jobId)) jobs.set(jobId, await getJob(ctx, jobId));
      const job = jobs.get(jobId);
      const image = job && job.status !== 'deleted' ? await getImage(ctx, jobId, imageId) : null;
      if (image && (image.status === 'queued' || image.status === 'processing')) continue;
      await deleteObject(ctx, ctx.cfg.uploadsBucket, o.Key);
      s.orphans++;
    } catch (err) {
      s.errors++;
      ctx.log.error('orphan input sweep failed', { jobId, imageId, ...errFields(err) });
    }
  }
}

/**
 * Jobs whose image messages may never have been sent: the creating request died after writing the job. Looked at
 * only once that request must be dead (its idempotency lock outlives the API function's timeout). Messages may
 * have gone out just before the death: a second copy is harmless (the worker skips terminal images).
 */
export async function sweepUnqueued(ctx: ServiceContext, s: SweepSummary): Promise<void> {
  const before = iso(ctx.now() - ctx.cfg.idempotencyLockSeconds * 1000);
  for (const jobId of await listOpenJobs(ctx, before)) {
    try {
      const data = await getJobWithImages(ctx, jobId);
      if (!data?.job.enqueuePending) continue;
      const queued = data.images.filter((i) => i.status === 'queued');
      ctx.log.warn('queueing the images of a job whose creating request died', {
        jobId,
        images: queued.length,
      });
      await enqueueImages(ctx, data.job, queued);
      await markJobEnqueued(ctx, jobId);
      s.unqueued++;
    } catch (err) {
      s.errors++;
      ctx.log.error('queueing an unqueued job failed', { jobId, ...errFields(err) });
    }
  }
}

/**
 * Jobs open for longer than the reconcile deadline whose images are all terminal: the step that made the last
 * image terminal died before finishing the job (e.g. the reconciler itself, which nothing retries). Finish them.
 */
export async function finishStragglers(ctx: ServiceContext, s: SweepSummary): Promise<void> {
  const before = iso(ctx.now() - ctx.cfg.reconcileAfterSeconds * 1000);
  for (const jobId of await listOpenJobs(ctx, before)) {
    try {
      if ((await maybeFinishJob(ctx, jobId)) === 'finished') s.finished++;
    } catch (err) {
      s.errors++;
      ctx.log.error('finishing a straggler failed', { jobId, ...errFields(err) });
    }
  }
}

/** Local stack only: what DynamoDB TTL and the S3 lifecycle rules do on AWS (dynalite and s3rver do neither). */
export async function expireLocal(ctx: ServiceContext, s: SweepSummary): Promise<void> {
  const nowS = Math.floor(ctx.now() / 1000);
  for (const table of [ctx.cfg.jobsTable]) {
    let start: Record<string, unknown> | undefined;
    do {
      const out = await ctx.clients.ddb.send(
        new ScanCommand({
          TableName: table,
          FilterExpression: '#ttl < :now',
          ExpressionAttributeNames: { '#ttl': 'ttl' },
          ExpressionAttributeValues: { ':now': nowS },
          ProjectionExpression: 'pk, sk',
          ExclusiveStartKey: start,
        }),
      );
      for (const k of out.Items ?? []) {
        await ctx.clients.ddb.send(new DeleteCommand({ TableName: table, Key: { pk: k.pk, sk: k.sk } }));
        s.expired++;
      }
      start = out.LastEvaluatedKey;
    } while (start);
  }
  // The same ages as the bucket lifecycle rules in cdk/constructs/storage.ts.
  const day = 86_400_000;
  const rules: Array<[string, string, number]> = [
    [ctx.cfg.uploadsBucket, 'uploads/', day],
    [ctx.cfg.uploadsBucket, 'inputs/', 4 * day],
    [ctx.cfg.resultsBucket, 'results/', ctx.cfg.retentionDays * day],
    [ctx.cfg.resultsBucket, 'reports/', ctx.cfg.retentionDays * day],
  ];
  for (const [bucket, prefix, age] of rules) {
    let token: string | undefined;
    do {
      const out = await ctx.clients.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of out.Contents ?? []) {
        if (o.Key && o.LastModified && ctx.now() - o.LastModified.getTime() > age) {
          await deleteObject(ctx, bucket, o.Key);
          s.expired++;
        }
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }
}

export function makeSweepHandler(ctx: ServiceContext) {
  return async (): Promise<SweepSummary> => {
    const s: SweepSummary = {
      outbox: 0,
      completed: 0,
      requeued: 0,
      failed: 0,
      expired: 0,
      orphans: 0,
      finished: 0,
      unqueued: 0,
      errors: 0,
    };
    await sweepOutbox(ctx, s);
    await reconcile(ctx, s);
    await sweepUnqueued(ctx, s);
    await finishStragglers(ctx, s);
    await sweepOrphanInputs(ctx, s);
    if (ctx.cfg.local) await expireLocal(ctx, s);
    if (s.outbox + s.completed + s.requeued + s.failed + s.orphans + s.finished + s.unqueued + s.errors > 0)
      ctx.log.info('sweep', { ...s });
    return s;
  };
}
