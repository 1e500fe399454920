/**
 * Processing of one image message (the body of the ECS worker). Outcomes:
 *  - done: report then result written to S3; the result's ObjectCreated event completes (and bills) the image.
 *  - failed: the customer's input is unusable (InputError) or a face stayed re-identifiable (PrivacyError);
 *    the image is failed now, not billed, and the message is deleted (retrying cannot help).
 *  - skipped: a redelivery for an image that is already terminal (the job is re-checked: if the attempt that
 *    failed the last image died before finishing the job, this finishes it), or for an erased job.
 *  - aborted: the job was erased (or the image taken away) while we worked, or the worker is stopping; the
 *    signal stopped the optimisation within one step.
 * The caller deletes the message only after this returns: by then report and result are stored in S3.
 *  - any other error propagates: the message is retried, and after the redrive limit lands in the DLQ.
 */
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import type { ServiceContext } from '../shared/context.js';
import type { ImageMessage } from '../shared/records.js';
import {
  getImage,
  getJob,
  markImageProcessing,
  markJobRunning,
  recordProgress,
} from '../shared/jobs-repo.js';
import { failImage, maybeFinishJob } from '../shared/lifecycle.js';
import { getObjectBytes, putObject } from '../shared/storage.js';
import { reportKey, resultKey } from '../shared/layout.js';
import { isNotFound } from '../shared/aws.js';
import { formatOfContentType } from '../pipeline/formats.js';
import {
  InputError,
  PrivacyError,
  type Anonymizer,
  type OutputFormat,
  type Progress,
} from '../pipeline/types.js';

const PROGRESS_INTERVAL_MS = 1000;

export type ProcessOutcome = 'done' | 'failed' | 'skipped' | 'aborted';

/** Why a worker abandons an image without an outcome of its own: the message goes back (or away) as decided by the caller. */
export class WorkAborted extends Error {
  constructor(readonly why: 'image-gone' | 'stopping') {
    super(`work aborted: ${why}`);
    this.name = 'WorkAborted';
  }
}

function formatOf(contentType: string, fallback: OutputFormat): OutputFormat {
  return formatOfContentType(contentType) ?? fallback;
}

async function exists(ctx: ServiceContext, bucket: string, key: string): Promise<boolean> {
  try {
    await ctx.clients.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export async function processImageMessage(
  ctx: ServiceContext,
  anonymizer: Anonymizer,
  msg: ImageMessage,
  /** Aborted by the worker when it stops (SIGTERM) or crashes on purpose (chaos tests). */
  stop?: AbortSignal,
  /** Called on every progress callback of the engine: the worker's liveness while it works (health.ts). */
  alive?: () => void,
): Promise<ProcessOutcome> {
  const { tenant, jobId, imageId } = msg;
  const log = ctx.log;
  const job = await getJob(ctx, jobId);
  if (!job || job.tenant !== tenant || job.status === 'deleted') {
    log.info('skipping image of a missing or erased job', { jobId, imageId });
    return 'skipped';
  }
  const image = await getImage(ctx, jobId, imageId);
  if (!image || image.status === 'done' || image.status === 'failed') {
    log.info('skipping image already terminal', { jobId, imageId, status: image?.status });
    // The attempt that made it terminal may have died before finishing the job (and queueing its webhook).
    await maybeFinishJob(ctx, jobId);
    return 'skipped';
  }
  const outKeyGuess = resultKey(tenant, jobId, imageId, msg.outputFormat);
  const input = await getObjectBytes(ctx, ctx.cfg.uploadsBucket, msg.inputKey);
  if (!input) {
    // A previous attempt may have finished (result written) just before dying; completion will handle it.
    if (await exists(ctx, ctx.cfg.resultsBucket, outKeyGuess)) return 'skipped';
    await failImage(ctx, msg, 'input-missing', 'the input image is no longer stored (erased or expired)');
    return 'failed';
  }
  if (!(await markImageProcessing(ctx, jobId, imageId))) return 'skipped';
  await markJobRunning(ctx, jobId);

  // Progress: at most one write per second, never overlapping. A write refused because the image is no longer
  // processing (erased, re-queued, terminal) aborts the work: nobody wants its result any more.
  const gone = new AbortController();
  const signal = stop ? AbortSignal.any([gone.signal, stop]) : gone.signal;
  let lastWrite = 0;
  let writing: Promise<void> = Promise.resolve();
  const onProgress = (p: Progress) => {
    alive?.();
    const t = Date.now();
    if (t - lastWrite < PROGRESS_INTERVAL_MS) return;
    lastWrite = t;
    writing = writing
      .then(async () => {
        const ok = await recordProgress(ctx, jobId, imageId, Math.max(0, Math.min(1, p.fraction)), p.stage);
        if (!ok) gone.abort(new WorkAborted('image-gone'));
      })
      .catch((err) => log.warn('progress write failed', { jobId, imageId, error: (err as Error).message }));
  };

  const started = Date.now();
  let result;
  try {
    result = await anonymizer.anonymize(
      new Uint8Array(input.buffer, input.byteOffset, input.byteLength),
      { ...msg.options, format: msg.outputFormat },
      onProgress,
      signal,
    );
  } catch (err) {
    await writing;
    if (signal.aborted) {
      const why = signal.reason instanceof WorkAborted ? signal.reason.why : 'stopping';
      log.info('image work aborted', { jobId, imageId, why });
      if (why === 'image-gone') return 'aborted';
      throw signal.reason instanceof Error ? signal.reason : new WorkAborted('stopping');
    }
    if (err instanceof InputError) {
      await failImage(ctx, msg, err.code || 'invalid-image', err.message);
      return 'failed';
    }
    if (err instanceof PrivacyError) {
      await failImage(ctx, msg, 'privacy-check-failed', err.message);
      return 'failed';
    }
    throw err;
  }
  await writing;
  if (signal.aborted && signal.reason instanceof WorkAborted && signal.reason.why === 'image-gone') {
    log.info('image erased while processing; result discarded', { jobId, imageId });
    return 'aborted';
  }
  const format = formatOf(result.contentType, msg.outputFormat);
  // Report first, result last: the result's ObjectCreated event is the completion signal and expects the report.
  await putObject(
    ctx,
    ctx.cfg.resultsBucket,
    reportKey(tenant, jobId, imageId),
    JSON.stringify(result.report),
    'application/json',
  );
  await putObject(
    ctx,
    ctx.cfg.resultsBucket,
    resultKey(tenant, jobId, imageId, format),
    result.image,
    result.contentType,
  );
  log.info('image anonymized', {
    jobId,
    imageId,
    faces: result.report.faces.length,
    outcome: result.report.outcome,
    ms: Date.now() - started,
  });
  return 'done';
}
