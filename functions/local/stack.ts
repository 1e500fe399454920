/**
 * The embedded local stack: S3 (s3rver), SQS (local-aws-sqs) and DynamoDB (dynalite, in memory) run in this
 * process on loopback ports; the API, worker, completion, DLQ and webhook handlers are the production
 * functions, fed by the same AWS SDK calls — only the endpoints (AWS_ENDPOINT_URL_*) differ. Event sources
 * that AWS provides (S3 notifications, SQS→Lambda) are bridged in-process with the same event JSON shapes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
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
import { CreateQueueCommand, GetQueueAttributesCommand, type Message } from '@aws-sdk/client-sqs';
import { CreateTableCommand } from '@aws-sdk/client-dynamodb';
import type { S3Event, SQSEvent, SQSRecord } from 'aws-lambda';
import { createContext, type ServiceContext } from '../shared/context.js';
import { createApiKey } from '../shared/keys-repo.js';
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
}

export interface LocalStack {
  url: string;
  apiKey: string;
  tenant: string;
  webhookSecret: string;
  ctx: ServiceContext;
  /** The environment a separate process (e.g. a worker) needs to join this stack. */
  env: Record<string, string>;
  createKey(tenant: string): Promise<{ apiKey: string; webhookSecret: string }>;
  /** Resolves when the in-process handlers have nothing left to do (jobs, events, webhooks). */
  stop(): Promise<void>;
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

export async function startLocalStack(opts: LocalStackOptions = {}): Promise<LocalStack> {
  const dataDir = await mkdtemp(join(tmpdir(), 'falco-local-'));
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

    const dyn = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 }); // no path → in-memory store
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
    const webhooksUrl = (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: 'falco-local-webhooks',
          Attributes: { VisibilityTimeout: '60' },
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
      await ctx.clients.s3.send(new CreateBucketCommand({ Bucket }));
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
    await ddbRaw.send(
      new CreateTableCommand({
        TableName: ctx.cfg.jobsTable,
        ...keySchema,
        AttributeDefinitions: [
          ...keySchema.AttributeDefinitions,
          { AttributeName: 'gsi1pk', AttributeType: 'S' },
          { AttributeName: 'gsi1sk', AttributeType: 'S' },
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
        ],
      }),
    );
    await ddbRaw.send(new CreateTableCommand({ TableName: ctx.cfg.keysTable, ...keySchema }));
    await ddbRaw.send(new CreateTableCommand({ TableName: ctx.cfg.usageTable, ...keySchema }));

    // Track in-process work so stop() can drain it.
    const pending = new Set<Promise<unknown>>();
    const track = <T>(p: Promise<T>): Promise<T> => {
      pending.add(p);
      void p.finally(() => pending.delete(p)).catch(() => undefined);
      return p;
    };

    // S3 → completion: s3rver emits the S3 notification JSON; deliver like Lambda's async invoke (retry twice).
    const complete = makeCompleteHandler(ctx);
    s3rver.on('event', (event: S3Event) => {
      const r = event.Records?.[0];
      if (
        !r ||
        r.s3.bucket.name !== ctx.cfg.resultsBucket ||
        !r.eventName.startsWith('ObjectCreated') ||
        !r.s3.object.key.startsWith('results/')
      )
        return;
      void track(
        (async () => {
          for (let attempt = 1; attempt <= 3; attempt++) {
            try {
              return await complete(event);
            } catch (err) {
              ctx.log.error('completion failed', { attempt, ...errFields(err) });
              await new Promise((res) => setTimeout(res, 200 * attempt));
            }
          }
        })(),
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
    const webhookConsumer = bridge(
      webhooksUrl,
      'arn:aws:sqs:us-east-1:123456789012:falco-local-webhooks',
      makeWebhookHandler(ctx),
    );
    stops.unshift(async () => {
      dlqConsumer.stop();
      webhookConsumer.stop();
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

    const demo = await createApiKey(ctx, 'demo', 'local demo key');

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

    return {
      url,
      apiKey: demo.apiKey,
      tenant: 'demo',
      webhookSecret: demo.webhookSecret,
      ctx,
      env,
      createKey: async (tenant) => {
        const k = await createApiKey(ctx, tenant);
        return { apiKey: k.apiKey, webhookSecret: k.webhookSecret };
      },
      stop: async () => {
        await new Promise<void>((r) => http.close(() => r()));
        if (worker) await worker.stop();
        await Promise.allSettled([...pending]);
        for (const s of stops) await s().catch(() => undefined);
        await opts.anonymizer?.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const s of stops) await s().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}
