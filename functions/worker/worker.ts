/**
 * The SQS consumer loop of the ECS worker task: one image at a time (the GPU is the bottleneck), visibility
 * extended by a heartbeat while optimizing, graceful shutdown on SIGTERM.
 */
import { Consumer } from 'sqs-consumer';
import { ChangeMessageVisibilityCommand, type Message } from '@aws-sdk/client-sqs';
import type { ServiceContext } from '../shared/context.js';
import type { ImageMessage } from '../shared/records.js';
import type { Anonymizer } from '../pipeline/types.js';
import { errFields } from '../shared/logger.js';
import { processImageMessage } from './process.js';
import { isId, isTenant } from '../shared/ids.js';
import { inputKey } from '../shared/layout.js';

export interface WorkerOptions {
  /** Seconds a received message stays invisible; the heartbeat keeps pushing it out while we work. */
  visibilityTimeout?: number;
  heartbeatInterval?: number;
  waitTimeSeconds?: number;
  /** On SIGTERM, how long an in-flight image may run before it is handed back to the queue. */
  shutdownGraceMs?: number;
}

export interface RunningWorker {
  stop(): Promise<void>;
  /** Resolves when the consumer has no message in flight (for tests). */
  idle(): Promise<void>;
}

export function startWorker(
  ctx: ServiceContext,
  anonymizer: Anonymizer,
  opts: WorkerOptions = {},
): RunningWorker {
  const visibilityTimeout = opts.visibilityTimeout ?? 120;
  const heartbeatInterval = opts.heartbeatInterval ?? Math.max(1, Math.floor(visibilityTimeout / 3));
  let inFlight: { message: Message; done: Promise<void> } | null = null;

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
        const outcome = await processImageMessage(ctx, anonymizer, msg);
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
          if (!finished && current.message.ReceiptHandle) {
            // Hand the image back now instead of making another worker wait out the visibility timeout.
            await ctx.clients.sqs
              .send(
                new ChangeMessageVisibilityCommand({
                  QueueUrl: ctx.cfg.jobsQueueUrl,
                  ReceiptHandle: current.message.ReceiptHandle,
                  VisibilityTimeout: 0,
                }),
              )
              .catch((err) => ctx.log.warn('could not release in-flight message', errFields(err)));
            ctx.log.warn('shutdown: in-flight image handed back to the queue', {
              messageId: current.message.MessageId,
            });
          }
        }
        ctx.log.info('worker stopped');
      })()),
  };
}
