/**
 * The embedded local stack: S3 (s3rver), SQS (local-aws-sqs) and DynamoDB (dynalite, in memory) run in this
 * process on loopback ports; the API, worker, completion, DLQ and webhook handlers are the production
 * functions, fed by the same AWS SDK calls — only the endpoints (AWS_ENDPOINT_URL_*) differ. Event sources
 * that AWS provides (S3 notifications, SQS→Lambda) are bridged in-process with the same event JSON shapes.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import S3rver from 's3rver';
import dynalite from 'dynalite';
import { createSqsServer } from 'local-aws-sqs';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { Consumer } from 'sqs-consumer';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageCommand,
  type Message,
} from '@aws-sdk/client-sqs';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { CreateTableCommand } from '@aws-sdk/client-dynamodb';
import type { S3Event, SQSEvent, SQSRecord } from 'aws-lambda';
import { createContext, type ServiceContext } from '../shared/context.js';
import { createApiKey, findApiKey, rotateWebhookSecret } from '../shared/keys-repo.js';
import type { ImageItem, ImageMessage, JobItem, WebhookMessage } from '../shared/records.js';
import { makeSweepHandler, type SweepSummary } from '../sweeper/handler.js';
import { errFields } from '../shared/logger.js';
import { createApp, notFoundResponse } from '../api/app.js';
import { makeCompleteHandler } from '../complete/handler.js';
import { makeDlqHandler } from '../dlq/handler.js';
import { makeWebhookHandler } from '../webhooks/handler.js';
import { startWorker, type RunningWorker, type WorkerOptions } from '../worker/worker.js';
import type { Anonymizer } from '../pipeline/types.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface LocalStackOptions {
  /** HTTP port of the API and web page; 0 picks a free one. */
  port?: number;
  /** The engine; when omitted no in-process worker runs (a separate worker process may consume the queue). */
  anonymizer?: Anonymizer;
  worker?: WorkerOptions;
  /** Receives before a job message goes to the DLQ. */
  maxReceiveCount?: number;
  /** Queue default visibility (the worker's own setting overrides it per receive). */
  jobsVisibilityTimeout?: number;
  /** Extra environment (e.g. WEBHOOK_RETRY_BASE_SECONDS, RATE_LIMIT_RPS) applied before the config is read. */
  env?: Record<string, string>;
  logLevel?: string;
  /** Also serve the demo web page at / (default true). */
  webPage?: boolean;
  /**
   * Keep the stack's data here (DynamoDB in LevelDB, S3 objects, the demo key) so a restart loses nothing;
   * `npm start` uses var/local/. Default: a temporary directory removed on stop.
   */
  dataDir?: string;
  /** How often the sweeper (outbox, reconciler, retention) runs; 0 = never. Default 5 s. */
  sweepIntervalMs?: number;
  /** Fault injection (chaos tests): return true to drop this S3 event before it reaches the completion queue. */
  dropS3Event?: () => boolean;
}

export interface LocalStack {
  url: string;
  apiKey: string;
  tenant: string;
  webhookSecret: string;
  ctx: ServiceContext;
  /** The environment a separate process (e.g. a worker) needs to join this stack. */
  env: Record<string, string>;
  /** A key for `tenant`; the webhook secret only when this created the tenant. */
  createKey(tenant: string): Promise<{ apiKey: string; webhookSecret?: string }>;
  /** Resolves when the in-process handlers have nothing left to do (jobs, events, webhooks). */
  stop(): Promise<void>;
  /** Like a power cut (chaos tests): the worker dies mid-image, queues and in-flight handlers are abandoned. */
  kill(): Promise<void>;
  /** Run the sweeper now (tests). */
  sweep(): Promise<SweepSummary>;
  /** The in-process worker, if any. */
  worker?: RunningWorker;
}

const sqsRecord = (m: Message, arn: string): SQSRecord => ({
  messageId: m.MessageId ?? '',
  receiptHandle: m.ReceiptHandle ?? '',
  body: m.Body ?? '',
  attributes: {
    ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? '1',
    SentTimestamp: m.Attributes?.SentTimestamp ?? String(Date.now()),
    SenderId: 'local',
    ApproximateFirstReceiveTimestamp: String(Date.now()),
  },
  messageAttributes: {},
  md5OfBody: m.MD5OfBody ?? '',
  eventSource: 'aws:sqs',
  eventSourceARN: arn,
  awsRegion: 'us-east-1',
});

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** Create, or accept that it already exists (a persistent data directory keeps tables and buckets). */
async function ensure(create: () => Promise<unknown>): Promise<void> {
  try {
    await create();
  } catch (err) {
    const name = (err as Error).name;
    if (
      name !== 'ResourceInUseException' &&
      name !== 'BucketAlreadyOwnedByYou' &&
      name !== 'BucketAlreadyExists'
    )
      throw err;
  }
}

export async function startLocalStack(opts: LocalStackOptions = {}): Promise<LocalStack> {
  const persistent = Boolean(opts.dataDir);
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'falco-local-')));
  await mkdir(dataDir, { recursive: true });
  const dropData = () => (persistent ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }));
  const stops: Array<() => Promise<void>> = [];
  try {
    const s3rver = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: join(dataDir, 's3'),
    });
    const { port: s3Port } = await s3rver.run();
    stops.push(() => s3rver.close());

    // LevelDB under the data directory: jobs, usage and keys survive a restart.
    const dyn = dynalite({
      path: join(dataDir, 'dynamodb'),
      createTableMs: 0,
      deleteTableMs: 0,
      updateTableMs: 0,
    });
    const dynPort = await listen(dyn, 0);
    stops.push(() => new Promise((r) => dyn.close(() => r())));

    const sqsServer = await createSqsServer({
      port: 0,
      hostname: '127.0.0.1',
      emulateQueueCreationLifecycle: false,
    });
    const sqsPort = (sqsServer.address() as AddressInfo).port;
    stops.push(() => new Promise((r) => sqsServer.close(() => r())));

    const endpoints = {
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${s3Port}`,
      AWS_ENDPOINT_URL_SQS: `http://127.0.0.1:${sqsPort}`,
      AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${dynPort}`,
      AWS_REGION: 'us-east-1',
      // The emulators ignore credentials, but the SDK insists on having some; never real ones.
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_SESSION_TOKEN: '',
      AWS_PROFILE: '',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    const names = {
      STAGE: 'local',
      UPLOADS_BUCKET: 'falco-local-uploads',
      RESULTS_BUCKET: 'falco-local-results',
      JOBS_TABLE: 'falco-local-jobs',
      KEYS_TABLE: 'falco-local-keys',
      USAGE_TABLE: 'falco-local-usage',
      RETENTION_DAYS: '1',
      LOG_LEVEL: opts.logLevel ?? process.env.LOG_LEVEL ?? 'WARN',
    };
    Object.assign(process.env, endpoints, names, opts.env ?? {});
    for (const k of ['AWS_SESSION_TOKEN', 'AWS_PROFILE']) delete process.env[k];

    // Queues first (their URLs are part of the config).
    const { SQSClient } = await import('@aws-sdk/client-sqs');
    const sqs = new SQSClient({ region: 'us-east-1' });
    const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'falco-local-jobs-dlq' }))).QueueUrl!;
    const dlqArn = (
      await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))
    ).Attributes!.QueueArn!;
    const jobsUrl = (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: 'falco-local-jobs',
          Attributes: {
            VisibilityTimeout: String(opts.jobsVisibilityTimeout ?? 60),
            RedrivePolicy: JSON.stringify({
              deadLetterTargetArn: dlqArn,
              maxReceiveCount: opts.maxReceiveCount ?? 3,
            }),
          },
        }),
      )
    ).QueueUrl!;
    // S3 → SQS → completion, as on AWS: a failing completion leaves the event on the queue (then its DLQ).
    const completionDlqUrl = (
      await sqs.send(new CreateQueueCommand({ QueueName: 'falco-local-completion-dlq' }))
    ).QueueUrl!;
    const completionDlqArn = (
      await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: completionDlqUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes!.QueueArn!;
    const completionUrl = (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: 'falco-local-completion',
          Attributes: {
            VisibilityTimeout: '10',
            RedrivePolicy: JSON.stringify({ deadLetterTargetArn: completionDlqArn, maxReceiveCount: 10 }),
          },
        }),
      )
    ).QueueUrl!;
    const webhooksUrl = (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: 'falco-local-webhooks',
          // Short: a message whose attempt is leased by another dispatcher comes back soon after the lease.
          Attributes: { VisibilityTimeout: '10' },
        }),
      )
    ).QueueUrl!;
    sqs.destroy();
    Object.assign(process.env, { JOBS_QUEUE_URL: jobsUrl, WEBHOOKS_QUEUE_URL: webhooksUrl });

    const ctx = createContext('local');
    const env: Record<string, string> = {
      ...endpoints,
      ...names,
      ...(opts.env ?? {}),
      JOBS_QUEUE_URL: jobsUrl,
      WEBHOOKS_QUEUE_URL: webhooksUrl,
    };
    delete env.AWS_SESSION_TOKEN;
    delete env.AWS_PROFILE;

    for (const Bucket of [ctx.cfg.uploadsBucket, ctx.cfg.resultsBucket])
      await ensure(() => ctx.clients.s3.send(new CreateBucketCommand({ Bucket })));
    const ddbRaw = ctx.clients.ddb;
    const keySchema = {
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' as const },
        { AttributeName: 'sk', AttributeType: 'S' as const },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' as const },
        { AttributeName: 'sk', KeyType: 'RANGE' as const },
      ],
      BillingMode: 'PAY_PER_REQUEST' as const,
    };
    await ensure(() =>
      ddbRaw.send(
        new CreateTableCommand({
          TableName: ctx.cfg.jobsTable,
          ...keySchema,
          AttributeDefinitions: [
            ...keySchema.AttributeDefinitions,
            { AttributeName: 'gsi1pk', AttributeType: 'S' },
            { AttributeName: 'gsi1sk', AttributeType: 'S' },
            { AttributeName: 'gsi2pk', AttributeType: 'S' },
            { AttributeName: 'gsi2sk', AttributeType: 'S' },
          ],
          GlobalSecondaryIndexes: [
            {
              IndexName: 'gsi1',
              KeySchema: [
                { AttributeName: 'gsi1pk', KeyType: 'HASH' },
                { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
              ],
              Projection: { ProjectionType: 'ALL' },
            },
            {
              // The outbox and the images in flight (sparse): keys only, so progress writes do not touch it.
              IndexName: 'gsi2',
              KeySchema: [
                { AttributeName: 'gsi2pk', KeyType: 'HASH' },
                { AttributeName: 'gsi2sk', KeyType: 'RANGE' },
              ],
              Projection: { ProjectionType: 'KEYS_ONLY' },
            },
          ],
        }),
      ),
    );
    await ensure(() => ddbRaw.send(new CreateTableCommand({ TableName: ctx.cfg.keysTable, ...keySchema })));
    await ensure(() => ddbRaw.send(new CreateTableCommand({ TableName: ctx.cfg.usageTable, ...keySchema })));

    // Track in-process work so stop() can drain it.
    const pending = new Set<Promise<unknown>>();
    const track = <T>(p: Promise<T>): Promise<T> => {
      pending.add(p);
      void p.finally(() => pending.delete(p)).catch(() => undefined);
      return p;
    };

    // S3 → completion queue: s3rver emits the S3 notification JSON; on AWS the bucket sends it to SQS itself.
    s3rver.on('event', (event: S3Event) => {
      const r = event.Records?.[0];
      if (
        !r ||
        r.s3.bucket.name !== ctx.cfg.resultsBucket ||
        !r.eventName.startsWith('ObjectCreated') ||
        !r.s3.object.key.startsWith('results/')
      )
        return;
      if (opts.dropS3Event?.()) return;
      void track(
        ctx.clients.sqs
          .send(new SendMessageCommand({ QueueUrl: completionUrl, MessageBody: JSON.stringify(event) }))
          .catch((err) => ctx.log.error('S3 event not delivered to the completion queue', errFields(err))),
      );
    });

    // SQS → Lambda bridges (DLQ and webhooks): partial batch failures leave the message for redelivery.
    const bridge = (
      queueUrl: string,
      arn: string,
      handler: (e: SQSEvent) => Promise<{ batchItemFailures: { itemIdentifier: string }[] }>,
    ) => {
      const consumer = Consumer.create({
        queueUrl,
        sqs: ctx.clients.sqs,
        waitTimeSeconds: 1,
        batchSize: 1,
        messageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
        attributeNames: ['All'],
        handleMessage: (m) =>
          track(
            (async () => {
              const res = await handler({ Records: [sqsRecord(m, arn)] });
              if (res.batchItemFailures.length) throw new Error('handler reported a batch item failure');
              return m;
            })(),
          ),
      });
      consumer.on('error', (err) => ctx.log.error('local bridge consumer error', errFields(err)));
      consumer.on('processing_error', (err) =>
        ctx.log.error('local bridge processing error', errFields(err)),
      );
      consumer.start();
      return consumer;
    };
    const dlqConsumer = bridge(dlqUrl, dlqArn, makeDlqHandler(ctx));
    const completionConsumer = bridge(
      completionUrl,
      'arn:aws:sqs:us-east-1:123456789012:falco-local-completion',
      makeCompleteHandler(ctx),
    );
    const webhookConsumer = bridge(
      webhooksUrl,
      'arn:aws:sqs:us-east-1:123456789012:falco-local-webhooks',
      makeWebhookHandler(ctx),
    );
    stops.unshift(async () => {
      dlqConsumer.stop();
      completionConsumer.stop();
      webhookConsumer.stop();
      clearInterval(sweepTimer);
    });

    let worker: RunningWorker | undefined;
    if (opts.anonymizer) {
      worker = startWorker(ctx, opts.anonymizer, {
        waitTimeSeconds: 1,
        visibilityTimeout: 30,
        shutdownGraceMs: 2000,
        ...opts.worker,
      });
    }

    const demo = await demoKey(ctx, dataDir);
    if (persistent) await recoverAfterRestart(ctx);

    // The sweeper (outbox, reconciler, retention) on a timer, as EventBridge schedules it on AWS.
    const sweep = makeSweepHandler(ctx);
    let sweeping: Promise<SweepSummary> | null = null;
    const sweepOnce = () => (sweeping ??= track(sweep()).finally(() => (sweeping = null)));
    const sweepTimer = setInterval(
      () => void sweepOnce().catch((err) => ctx.log.error('sweep failed', errFields(err))),
      opts.sweepIntervalMs || 5000,
    );
    if (opts.sweepIntervalMs === 0) clearInterval(sweepTimer);
    sweepTimer.unref();

    const root = new Hono();
    if (opts.webPage !== false) {
      const page = await readFile(join(here, 'web', 'index.html'), 'utf8');
      const script = await readFile(join(here, 'web', 'app.js'), 'utf8');
      root.get('/', (c) => c.html(page));
      root.get('/app.js', (c) => c.body(script, 200, { 'Content-Type': 'text/javascript; charset=utf-8' }));
      // Only the local stack hands out a key to the page (it is the printed demo key).
      root.get('/local/config.json', (c) => c.json({ apiKey: demo.apiKey }));
    }
    root.route('/', createApp(ctx));
    root.notFound(notFoundResponse);
    const http = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: root.fetch, port: opts.port ?? 8787, hostname: '127.0.0.1' }, () =>
        resolve(s as Server),
      );
    });
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

    // Lets `npm run cli -- keys create` (and other tools) find this stack without hand-set endpoints.
    if (persistent)
      await writeFile(join(dataDir, 'stack.json'), JSON.stringify({ pid: process.pid, url, env }, null, 2));

    let killed = false;
    return {
      url,
      worker,
      sweep: sweepOnce,
      kill: async () => {
        killed = true;
        if (worker) await worker.crash();
        http.closeAllConnections?.();
        await new Promise<void>((r) => http.close(() => r()));
        for (const s of stops) await s().catch(() => undefined);
        await opts.anonymizer?.close();
        await dropData();
      },
      apiKey: demo.apiKey,
      tenant: 'demo',
      webhookSecret: demo.webhookSecret!,
      ctx,
      env,
      createKey: async (tenant) => {
        const k = await createApiKey(ctx, tenant);
        return { apiKey: k.apiKey, webhookSecret: k.webhookSecret };
      },
      stop: async () => {
        if (killed) return;
        await new Promise<void>((r) => http.close(() => r()));
        if (worker) await worker.stop();
        await Promise.allSettled([...pending]);
        for (const s of stops) await s().catch(() => undefined);
        await opts.anonymizer?.close();
        if (persistent) await rm(join(dataDir, 'stack.json'), { force: true });
        await dropData();
      },
    };
  } catch (err) {
    for (const s of stops) await s().catch(() => undefined);
    await dropData();
    throw err;
  }
}

/** The demo tenant's key: created once per data directory and kept there (the raw key is only ever local). */
async function demoKey(
  ctx: ServiceContext,
  dataDir: string,
): Promise<{ apiKey: string; webhookSecret: string }> {
  const file = join(dataDir, 'demo-key.json');
  try {
    const saved = JSON.parse(await readFile(file, 'utf8')) as { apiKey: string; webhookSecret: string };
    if (await findApiKey(ctx, saved.apiKey)) return saved;
  } catch {
    // first start (or a data directory from an older version): make one
  }
  const k = await createApiKey(ctx, 'demo', 'local demo key');
  // The secret is shown once, when the tenant is created; a demo tenant that already exists (its key file was
  // lost) gets a fresh secret so the local stack can still sign and verify webhooks.
  const webhookSecret = k.webhookSecret ?? (await rotateWebhookSecret(ctx, 'demo'));
  await writeFile(file, JSON.stringify({ apiKey: k.apiKey, webhookSecret }), { mode: 0o600 });
  return { apiKey: k.apiKey, webhookSecret };
}

/**
 * local-aws-sqs keeps its queues in memory, so a restart loses every message; the tables do not. Put back what
 * the messages carried: open images go back on the jobs queue (or are completed, when their result is already
 * in S3), and webhooks that were on the queue are enqueued again (the attempt claim drops any duplicate).
 */
async function recoverAfterRestart(ctx: ServiceContext): Promise<void> {
  let start: Record<string, unknown> | undefined;
  const jobs = new Map<string, JobItem>();
  const open: ImageItem[] = [];
  do {
    const out = await ctx.clients.ddb.send(
      new ScanCommand({ TableName: ctx.cfg.jobsTable, ExclusiveStartKey: start, ConsistentRead: true }),
    );
    for (const item of out.Items ?? []) {
      if (item.sk === 'JOB') jobs.set(item.jobId as string, item as JobItem);
      else if (
        String(item.sk).startsWith('IMG#') &&
        (item.status === 'queued' || item.status === 'processing')
      )
        open.push(item as ImageItem);
    }
    start = out.LastEvaluatedKey;
  } while (start);
  for (const image of open) {
    const job = jobs.get(image.jobId);
    if (!job || job.status === 'deleted') continue;
    const msg: ImageMessage = {
      v: 1,
      tenant: image.tenant,
      jobId: image.jobId,
      imageId: image.imageId,
      inputKey: image.inputKey,
      options: job.options,
      outputFormat: image.outputFormat,
    };
    await ctx.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: ctx.cfg.jobsQueueUrl, MessageBody: JSON.stringify(msg) }),
    );
  }
  let hooks = 0;
  for (const job of jobs.values()) {
    if (job.webhookStatus !== 'enqueued' || job.status === 'deleted') continue;
    const msg: WebhookMessage = {
      v: 1,
      jobId: job.jobId,
      tenant: job.tenant,
      attempt: job.webhookNextAttempt ?? 1,
    };
    await ctx.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: ctx.cfg.webhooksQueueUrl, MessageBody: JSON.stringify(msg) }),
    );
    hooks++;
  }
  // Completion messages lost with the queue: the reconciler finds those images (result in S3, still processing).
  if (open.length || hooks)
    ctx.log.info('local stack restarted: messages restored', { images: open.length, webhooks: hooks });
}
