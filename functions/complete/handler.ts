/**
 * Completion: S3 ObjectCreated on `results/` (written last by the worker, after the report), delivered through
 * the completion SQS queue (S3 → SQS, with a DLQ and an alarm) rather than an asynchronous invoke: a failing or
 * badly deployed function leaves the events on the queue instead of dropping them after two retries. Each SQS
 * record carries one S3 notification; a failed record is reported alone (partial batch response) and
 * redelivered, and every step of `completeImage` is idempotent. The reconciler (functions/sweeper) completes any
 * image whose event never arrived at all.
 */
import type { S3Event, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { ServiceContext } from '../shared/context.js';
import { parseResultKey } from '../shared/layout.js';
import { completeImage } from '../shared/lifecycle.js';
import { errFields } from '../shared/logger.js';

/** Handle the records of one S3 notification; throws when a step fails (the caller retries the whole event). */
export async function handleS3Event(ctx: ServiceContext, event: S3Event): Promise<void> {
  for (const record of event.Records ?? []) {
    if (!record.eventName?.startsWith('ObjectCreated')) continue;
    if (record.s3?.bucket?.name !== ctx.cfg.resultsBucket) continue;
    // S3 event keys are URL-encoded with '+' for spaces.
    const key = decodeURIComponent(record.s3.object.key.replace(/\+/g, ' '));
    const ref = parseResultKey(key);
    if (!ref) {
      ctx.log.debug('ignoring non-result object', { key });
      continue;
    }
    const outcome = await completeImage(ctx, {
      tenant: ref.tenant,
      jobId: ref.jobId,
      imageId: ref.imageId,
      resultKey: key,
    });
    ctx.log.info('result processed', { jobId: ref.jobId, imageId: ref.imageId, outcome });
  }
}

export function makeCompleteHandler(ctx: ServiceContext) {
  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      let s3: S3Event & { Event?: string };
      try {
        s3 = JSON.parse(record.body) as S3Event & { Event?: string };
      } catch (err) {
        ctx.log.error('dropping malformed completion message', {
          messageId: record.messageId,
          ...errFields(err),
        });
        continue;
      }
      // S3 sends one `s3:TestEvent` when the notification is configured: nothing to do.
      if (s3.Event === 's3:TestEvent' || !Array.isArray(s3.Records)) continue;
      try {
        await handleS3Event(ctx, s3);
      } catch (err) {
        ctx.log.error('completion failed; will be redelivered', {
          messageId: record.messageId,
          ...errFields(err),
        });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
