/**
 * The SQS consumer loop of the ECS worker task: one image at a time (the GPU is the bottleneck), visibility
 * extended by a heartbeat while optimizing, graceful shutdown on SIGTERM.
 */
import { Consumer } from 'sqs-consumer';
import { DeleteMessageCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import type { ServiceContext } from '../shared/context.js';
import type { ImageMessage } from '../shared/records.js';
import type { Anonymizer } from '../pipeline/types.js';
import { errFields } from '../shared/logger.js';
import { processImageMessage } from './process.js';
import { taskProtection, type TaskProtection } from './protection.js';
import { isId, isTenant } from '../shared/ids.js';
import { inputKey } from '../shared/layout.js';

export interface WorkerOptions {
  /** Seconds a received message stays invisible; the heartbeat keeps pushing it out while we work. */
  visibilityTimeout?: number;
  heartbeatInterval?: number;
  waitTimeSeconds?: number;
  /** On SIGTERM, how long an in-flight image may run before it is handed back to the queue. */
  shutdownGraceMs?: number;
  /** ECS scale-in protection while an image is processed (default: from the task metadata; none locally). */
  protection?: TaskProtection;
  /**
   * Signs of life for the health check (health.ts): on a timer while no image is in flight, and on every progress
   * callback of the engine while one is, so a hung engine stops the beats.
   */
  alive?: () => void;
  /** How often the idle timer signals life (default 5 s). */
  aliveEveryMs?: number;
}

export interface RunningWorker {
  /** Graceful: finish the image within the grace period, else abort it (within one step) and hand it back. */
  stop(): Promise<void>;
  /** Like SIGKILL, for chaos tests: stop at once, abandon the message to its visibility timeout. */
  crash(): Promise<void>;
  /** Resolves when the consumer has no message in flight (for tests). */
  idle(): Promise<void>;
}

/**
 * Give an unfinished image to another worker now. A fresh copy is sent and the received message deleted (in that
 * order: a crash between the two leaves a duplicate, never nothing), so a shutdown does not count towards the
 * redrive limit the way a crash does: only crashes send an image to the DLQ.
 */
async function handBack(ctx: ServiceContext, message: Message): Promise<void> {
  try {
    await ctx.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: ctx.cfg.jobsQueueUrl, MessageBody: message.Body ?? '' }),
    );
    await ctx.clients.sqs.send(
      new DeleteMessageCommand({ QueueUrl: ctx.cfg.jobsQueueUrl, ReceiptHandle: message.ReceiptHandle! }),
    );
    ctx.log.warn('shutdown: in-flight image handed back to the queue', { messageId: message.MessageId });
  } catch (err) {
    // The visibility timeout returns it anyway (counted as a receive).
    ctx.log.warn('could not hand the in-flight message back', errFields(err));
  }
}

export function startWorker(
  ctx: ServiceContext,
  anonymizer: Anonymizer,
  opts: WorkerOptions = {},
): RunningWorker {
  const visibilityTimeout = opts.visibilityTimeout ?? 120;
  const heartbeatInterval = opts.heartbeatInterval ?? Math.max(1, Math.floor(visibilityTimeout / 3));
  let inFlight: { message: Message; done: Promise<void> } | null = null;
  // Aborts the image in flight: on stop after the grace period, or on crash().
  let abort = new AbortController();
  const protection = opts.protection ?? taskProtection(ctx.log);

  const consumer = Consumer.create({
    queueUrl: ctx.cfg.jobsQueueUrl,
    sqs: ctx.clients.sqs,
    batchSize: 1,
    waitTimeSeconds: opts.waitTimeSeconds ?? 20,
    visibilityTimeout,
    heartbeatInterval,
    messageSystemAttributeNames: ['ApproximateReceiveCount'],
    // Legacy spelling too: some SQS emulators (local-aws-sqs) only honour AttributeNames.
    attributeNames: ['All'],
    handleMessage: async (message) => {
      let release!: () => void;
      inFlight = { message, done: new Promise<void>((r) => (release = r)) };
      try {
        let msg: ImageMessage;
        try {
          msg = JSON.parse(message.Body ?? '') as ImageMessage;
          if (msg.v !== 1 || !msg.jobId || !msg.imageId || !msg.inputKey) throw new Error('missing fields');
          // Every id is checked before it reaches a key or a table, and the input must be this image's own.
          if (!isTenant(msg.tenant) || !isId('job', msg.jobId) || !isId('img', msg.imageId))
            throw new Error('malformed ids');
          if (msg.inputKey !== inputKey(msg.tenant, msg.jobId, msg.imageId))
            throw new Error('input key is not the image’s own');
        } catch (err) {
          ctx.log.error('dropping malformed job message', {
            messageId: message.MessageId,
            ...errFields(err),
          });
          return message;
        }
        await protection.set(true);
        let outcome;
        try {
          outcome = await processImageMessage(ctx, anonymizer, msg, abort.signal, opts.alive);
        } finally {
          await protection.set(false);
        }
        ctx.log.info('message handled', {
          jobId: msg.jobId,
          imageId: msg.imageId,
          outcome,
          receiveCount: Number(message.Attributes?.ApproximateReceiveCount ?? 0),
        });
        return message; // acknowledged: deleted from the queue
      } finally {
        inFlight = null;
        release();
      }
    },
  });
  consumer.on('processing_error', (err, message) => {
    const m = Array.isArray(message) ? message[0] : message;
    ctx.log.error('image attempt failed; will be retried', { messageId: m?.MessageId, ...errFields(err) });
  });
  consumer.on('error', (err) => ctx.log.error('consumer error', errFields(err)));
  consumer.start();
  const aliveTimer = opts.alive
    ? setInterval(() => {
        if (!inFlight) opts.alive!();
      }, opts.aliveEveryMs ?? 5000)
    : undefined;
  aliveTimer?.unref();
  opts.alive?.();
  ctx.log.info('worker started', {
    queue: ctx.cfg.jobsQueueUrl.split('/').pop(),
    visibilityTimeout,
    heartbeatInterval,
  });

  let stopping: Promise<void> | null = null;
  return {
    idle: async () => {
      while (inFlight) await (inFlight as { done: Promise<void> }).done;
    },
    crash: async () => {
      clearInterval(aliveTimer);
      stopping ??= Promise.resolve();
      consumer.stop({ abort: true });
      abort.abort(new Error('worker crashed (simulated)'));
      const current = inFlight as { done: Promise<void> } | null;
      if (current) await current.done;
    },
    stop: () =>
      (stopping ??= (async () => {
        consumer.stop();
        const current = inFlight as { message: Message; done: Promise<void> } | null;
        if (current) {
          const grace = opts.shutdownGraceMs ?? 25_000;
          const finished = await Promise.race([
            current.done.then(() => true),
            new Promise<boolean>((r) => setTimeout(() => r(false), grace).unref()),
          ]);
          if (!finished) {
            // Stop computing (within one optimisation step) before handing the image over: otherwise this task
            // would compute on until SIGKILL while another one does the same work.
            abort.abort(new Error('worker stopping'));
            await current.done;
            if (current.message.ReceiptHandle) await handBack(ctx, current.message);
          }
        }
        abort = new AbortController();
        clearInterval(aliveTimer);
        ctx.log.info('worker stopped');
      })()),
  };
}
