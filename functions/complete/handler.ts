/**
 * Completion: S3 ObjectCreated on `results/` (written last by the worker, after the report). The same
 * function serves Lambda (S3 notification) and the local stack (s3rver's event emitter).
 */
import type { S3Event } from 'aws-lambda';
import type { ServiceContext } from '../shared/context.js';
import { parseResultKey } from '../shared/layout.js';
import { completeImage } from '../shared/lifecycle.js';

export function makeCompleteHandler(ctx: ServiceContext) {
  return async (event: S3Event): Promise<void> => {
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
      // Any throw fails the invocation; Lambda's async retries replay it and every step is idempotent.
      const outcome = await completeImage(ctx, {
        tenant: ref.tenant,
        jobId: ref.jobId,
        imageId: ref.imageId,
        resultKey: key,
      });
      ctx.log.info('result processed', { jobId: ref.jobId, imageId: ref.imageId, outcome });
    }
  };
}
