/**
 * Jobs DLQ: a message lands here after the redrive limit (the worker crashed or threw on every attempt).
 * The image is failed (not billed) and the job finishes if that was its last open image.
 */
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { ServiceContext } from '../shared/context.js';
import type { ImageMessage } from '../shared/records.js';
import { failImage } from '../shared/lifecycle.js';
import { errFields } from '../shared/logger.js';

export function makeDlqHandler(ctx: ServiceContext) {
  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      let msg: ImageMessage;
      try {
        msg = JSON.parse(record.body) as ImageMessage;
        if (!msg.jobId || !msg.imageId) throw new Error('not an image message');
      } catch (err) {
        // Unparseable: nothing to fail; drop it rather than loop forever.
        ctx.log.error('dropping malformed DLQ message', { messageId: record.messageId, ...errFields(err) });
        continue;
      }
      try {
        await failImage(
          ctx,
          msg,
          'processing-failed',
          'processing failed after repeated attempts; the image was not billed',
        );
      } catch (err) {
        ctx.log.error('DLQ handling failed', { jobId: msg.jobId, imageId: msg.imageId, ...errFields(err) });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
