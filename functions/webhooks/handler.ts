/**
 * Webhook dispatcher (SQS event source on the webhooks queue). Each message is one delivery attempt. A failed
 * attempt re-enqueues itself with attempt+1 and an exponential delay (base·3^(n-1), capped at 12 h); SQS caps
 * DelaySeconds at 900, so longer waits carry `notBefore` and hop through the queue until due. With the defaults
 * (10 s base, 11 attempts) the retries span ~33 h. The last failure marks the job's webhook failed.
 */
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { Webhook } from 'standardwebhooks';
import type { ServiceContext } from '../shared/context.js';
import type { Config } from '../shared/config.js';
import type { WebhookMessage } from '../shared/records.js';
import { claimWebhookAttempt, getJobWithImages, setWebhookState } from '../shared/jobs-repo.js';
import { getWebhookSecret } from '../shared/keys-repo.js';
import { webhookEvent } from '../shared/views.js';
import { errFields } from '../shared/logger.js';
import { deliver, type DeliveryResult } from './deliver.js';

const SQS_MAX_DELAY = 900;

/** Another dispatcher holds this attempt's lease: let SQS redeliver the message after it expires. */
export class WebhookBusy extends Error {
  constructor(jobId: string, attempt: number) {
    super(`webhook attempt ${attempt} of job ${jobId} is held by another dispatcher`);
    this.name = 'WebhookBusy';
  }
}

/** Seconds to wait after failed attempt `attempt` (1-based) before the next one. */
export function retryDelaySeconds(cfg: Pick<Config, 'webhook'>, attempt: number): number {
  const base = cfg.webhook.retryBaseSeconds;
  return Math.min(base * 3 ** (attempt - 1), base * 4320);
}

async function send(ctx: ServiceContext, msg: WebhookMessage, delaySeconds: number): Promise<void> {
  await ctx.clients.sqs.send(
    new SendMessageCommand({
      QueueUrl: ctx.cfg.webhooksQueueUrl,
      MessageBody: JSON.stringify(msg),
      DelaySeconds: Math.max(0, Math.min(SQS_MAX_DELAY, Math.ceil(delaySeconds))),
    }),
  );
}

/** A write that must not be lost to a transient error: a few quick tries before giving up to the queue. */
async function persist<T>(write: () => Promise<T>, tries = 4): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await write();
    } catch (err) {
      if (i >= tries) throw err;
      await new Promise((r) => setTimeout(r, 50 * 2 ** i));
    }
  }
}

export type AttemptOutcome = 'delivered' | 'retry' | 'failed' | 'skipped' | 'deferred';

export async function processWebhookMessage(
  ctx: ServiceContext,
  msg: WebhookMessage,
  deliverFn: typeof deliver = deliver,
): Promise<AttemptOutcome> {
  const now = ctx.now();
  if (msg.notBefore && msg.notBefore > now + 1000) {
    await send(ctx, msg, (msg.notBefore - now) / 1000);
    return 'deferred';
  }
  const data = await getJobWithImages(ctx, msg.jobId);
  if (!data || data.job.tenant !== msg.tenant || data.job.status === 'deleted' || !data.job.webhookUrl)
    return 'skipped';
  const { job, images } = data;
  if (job.webhookStatus !== 'pending' && job.webhookStatus !== 'enqueued') return 'skipped';
  // One dispatcher per attempt: duplicates (eager enqueue + outbox sweep, SQS redelivery) stop here. The lease
  // outlives the delivery's total deadline, so a dispatcher that dies mid-attempt frees it for the redelivery.
  const claim = await claimWebhookAttempt(ctx, job.jobId, msg.attempt, ctx.cfg.webhook.timeoutMs + 5_000);
  if (claim === 'stale') return 'skipped';
  if (claim === 'busy') throw new WebhookBusy(job.jobId, msg.attempt);
  if (claim === 'resend')
    ctx.log.warn('webhook attempt sent again: its previous sender died with the outcome unknown', {
      jobId: job.jobId,
      attempt: msg.attempt,
      previousStart: job.webhookSendingSince,
    });
  const secret = await getWebhookSecret(ctx, job.tenant);
  if (!secret) {
    ctx.log.error('tenant missing; cannot sign webhook', { jobId: job.jobId });
    await setWebhookState(ctx, job.jobId, {
      status: 'failed',
      attempts: msg.attempt,
      lastError: 'tenant not found',
    });
    return 'failed';
  }
  const event = webhookEvent(job, images, now);
  const body = JSON.stringify(event);
  // One event per job: the id is stable across retries so receivers can de-duplicate.
  const id = `msg_${job.jobId}`;
  const signature = new Webhook(secret).sign(id, new Date(now), body);
  let result: DeliveryResult;
  try {
    result = await deliverFn(
      job.webhookUrl!,
      body,
      {
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(now / 1000)),
        'webhook-signature': signature,
      },
      { allowLoopback: ctx.cfg.local, timeoutMs: ctx.cfg.webhook.timeoutMs },
    );
  } catch (err) {
    result = { ok: false, error: errFields(err).errorMessage as string };
  }
  if (result.ok) {
    // The endpoint has it: a lost 'delivered' write would mean sending it again, so a transient failure of that
    // write is retried here rather than left to the queue's redelivery.
    await persist(() => setWebhookState(ctx, job.jobId, { status: 'delivered', attempts: msg.attempt }));
    ctx.log.info('webhook delivered', {
      jobId: job.jobId,
      attempt: msg.attempt,
      status: result.status,
      type: event.type,
    });
    return 'delivered';
  }
  if (result.permanent || msg.attempt >= ctx.cfg.webhook.maxAttempts) {
    await setWebhookState(ctx, job.jobId, {
      status: 'failed',
      attempts: msg.attempt,
      lastError: result.error ?? 'failed',
    });
    ctx.log.warn('webhook failed for good', { jobId: job.jobId, attempt: msg.attempt, error: result.error });
    return 'failed';
  }
  const delay = retryDelaySeconds(ctx.cfg, msg.attempt);
  await send(ctx, { ...msg, attempt: msg.attempt + 1, notBefore: now + delay * 1000 }, delay);
  await setWebhookState(ctx, job.jobId, {
    status: 'enqueued',
    attempts: msg.attempt,
    nextAttempt: msg.attempt + 1,
    lastError: result.error ?? 'failed',
  });
  ctx.log.info('webhook attempt failed; retry scheduled', {
    jobId: job.jobId,
    attempt: msg.attempt,
    delaySeconds: delay,
    error: result.error,
  });
  return 'retry';
}

export function makeWebhookHandler(ctx: ServiceContext, deliverFn: typeof deliver = deliver) {
  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      let msg: WebhookMessage;
      try {
        msg = JSON.parse(record.body) as WebhookMessage;
        if (!msg.jobId || typeof msg.attempt !== 'number') throw new Error('not a webhook message');
      } catch (err) {
        ctx.log.error('dropping malformed webhook message', {
          messageId: record.messageId,
          ...errFields(err),
        });
        continue;
      }
      try {
        await processWebhookMessage(ctx, msg, deliverFn);
      } catch (err) {
        // Infrastructure failure (DynamoDB/SQS): let SQS redeliver this record only.
        ctx.log.error('webhook dispatch error', { jobId: msg.jobId, ...errFields(err) });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
