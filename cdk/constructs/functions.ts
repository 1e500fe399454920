import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import { Construct, type IConstruct } from 'constructs';
import type { Queues } from './queues.js';
import type { Storage } from './storage.js';

export type FunctionName = 'api' | 'complete' | 'webhooks' | 'dlq' | 'sweeper';

/** Handler entries agreed with the service code (each exports `handler`). */
export const FUNCTION_ENTRIES: Record<FunctionName, string> = {
  api: 'functions/api/lambda.ts',
  complete: 'functions/complete/lambda.ts',
  webhooks: 'functions/webhooks/lambda.ts',
  dlq: 'functions/dlq/lambda.ts',
  sweeper: 'functions/sweeper/lambda.ts',
};

/** All functions share one runtime; pinned (not NODEJS_LATEST) so a CDK upgrade never changes it silently. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_22_X;
/** sharp ships linux-arm64 binaries and nothing else is native: Graviton is ~20% cheaper per GB-s. */
export const LAMBDA_ARCHITECTURE = lambda.Architecture.ARM_64;
export const WEBHOOK_FUNCTION_TIMEOUT = Duration.seconds(60);
/** Each delivery has a total deadline (WEBHOOK_TIMEOUT_MS, 10 s): a batch of 4 slow endpoints (40 s) still ends
 * inside the 60 s function timeout, so one slow endpoint never times the batch out and multiplies retries. */
export const WEBHOOK_BATCH_SIZE = 4;
export const WEBHOOK_DELIVERY_DEADLINE_MS = 10_000;
if (WEBHOOK_BATCH_SIZE * WEBHOOK_DELIVERY_DEADLINE_MS + 15_000 > WEBHOOK_FUNCTION_TIMEOUT.toMilliseconds())
  throw new Error('webhook batch size × delivery deadline does not fit the function timeout');
/** Matches the jobs DLQ's 6-minute visibility timeout (AWS asks for >= 6x the function timeout). */
const DLQ_FUNCTION_TIMEOUT = Duration.seconds(60);

export interface FunctionsProps {
  readonly repoRoot: string;
  readonly storage: Storage;
  readonly queues: Queues;
  readonly environment: Record<string, string>;
  readonly sharpLayer?: lambda.ILayerVersion;
  readonly apiRateLimit: number;
  readonly apiBurstLimit: number;
  /**
   * Replaces esbuild bundling (tests only: bundling four functions costs seconds and needs the
   * entries to exist). Runtime, architecture, handler name and everything else stay identical.
   */
  readonly functionCode?: (name: FunctionName) => lambda.Code;
}

export class Functions extends Construct {
  readonly api: nodejs.NodejsFunction;
  readonly complete: nodejs.NodejsFunction;
  readonly webhooks: nodejs.NodejsFunction;
  readonly dlq: nodejs.NodejsFunction;
  readonly sweeper: nodejs.NodejsFunction;
  readonly httpApi: apigw.HttpApi;
  readonly stage: apigw.HttpStage;
  /** The catch-all route (every path goes to the Hono app). */
  readonly apiRoute: IConstruct;
  readonly all: readonly nodejs.NodejsFunction[];

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const { storage, queues } = props;

    const make = (
      name: FunctionName,
      opts: { timeout: Duration; memorySize: number; description: string; layers?: lambda.ILayerVersion[] },
    ): nodejs.NodejsFunction => {
      const entry = path.join(props.repoRoot, FUNCTION_ENTRIES[name]);
      const code = props.functionCode?.(name);
      if (code === undefined && !existsSync(entry)) {
        throw new Error(
          `Lambda entry ${FUNCTION_ENTRIES[name]} does not exist (expected an exported "handler")`,
        );
      }
      const fnId = name.charAt(0).toUpperCase() + name.slice(1);
      const logGroup = new logs.LogGroup(this, `${fnId}Logs`, {
        retention: logs.RetentionDays.ONE_MONTH,
      });
      return new nodejs.NodejsFunction(this, fnId, {
        runtime: LAMBDA_RUNTIME,
        architecture: LAMBDA_ARCHITECTURE,
        description: opts.description,
        memorySize: opts.memorySize,
        timeout: opts.timeout,
        logGroup,
        loggingFormat: lambda.LoggingFormat.JSON,
        tracing: lambda.Tracing.ACTIVE,
        layers: opts.layers,
        environment: { ...props.environment, NODE_OPTIONS: '--enable-source-maps' },
        ...(code !== undefined
          ? { code, handler: 'index.handler' }
          : {
              entry,
              handler: 'handler',
              projectRoot: props.repoRoot,
              depsLockFilePath: path.join(props.repoRoot, 'package-lock.json'),
              bundling: {
                format: nodejs.OutputFormat.ESM,
                target: 'node22',
                minify: true,
                sourceMap: true,
                // ESM output: some CommonJS dependencies still call require(); give them one.
                banner:
                  "import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);",
                mainFields: ['module', 'main'],
                // sharp comes from the layer (native binaries for linux-arm64). The AWS SDK is
                // bundled on purpose: the version tested is the version deployed.
                externalModules: ['sharp'],
              },
            }),
      });
    };

    this.api = make('api', {
      timeout: Duration.seconds(29), // HTTP API integrations time out at 30 s anyway
      memorySize: 1024, // sharp decodes full-size uploads; more memory also buys CPU
      description: 'HTTP API (Hono)',
      layers: props.sharpLayer ? [props.sharpLayer] : undefined,
    });
    this.complete = make('complete', {
      timeout: Duration.seconds(60),
      memorySize: 512,
      description: 'Result written to S3 -> job bookkeeping and webhook enqueue',
    });
    this.webhooks = make('webhooks', {
      timeout: WEBHOOK_FUNCTION_TIMEOUT,
      memorySize: 256,
      description: 'Signed webhook delivery with delayed re-enqueue on failure',
    });
    this.dlq = make('dlq', {
      timeout: DLQ_FUNCTION_TIMEOUT,
      memorySize: 256,
      description: 'Jobs DLQ -> mark images failed',
    });
    this.sweeper = make('sweeper', {
      timeout: Duration.seconds(120),
      memorySize: 256,
      description: 'Every minute: webhook outbox, stalled-image reconciler',
    });
    this.all = [this.api, this.complete, this.webhooks, this.dlq, this.sweeper];

    // --- permissions: each function gets what its role in the flow needs, nothing account-wide, and no
    // write grant it does not use (test/cdk/stack.test.ts asserts it per function).
    storage.uploads.grantReadWrite(this.api); // presigned uploads, copy uploads/ -> inputs/
    storage.results.grantRead(this.api); // presigned downloads, reports
    storage.results.grantDelete(this.api); // DELETE /v1/jobs/{id} erases results and reports now
    storage.jobs.grantReadWriteData(this.api); // jobs, images, idempotency keys, admission counters
    storage.keys.grantReadData(this.api); // API-key lookups only (keys are issued by the CLI)
    storage.usage.grantReadData(this.api); // GET /v1/usage counts
    queues.jobs.grantSendMessages(this.api);
    queues.webhooks.grantSendMessages(this.api);

    storage.results.grantRead(this.complete);
    storage.results.grantDelete(this.complete); // erased jobs: discard results that arrive after DELETE
    storage.uploads.grantDelete(this.complete, 'inputs/*'); // originals deleted once the image is terminal
    storage.jobs.grantReadWriteData(this.complete);
    storage.usage.grantReadWriteData(this.complete); // the conditional usage put (billing)
    queues.webhooks.grantSendMessages(this.complete);

    storage.keys.grantReadData(this.webhooks); // per-tenant webhook secrets (encrypted)
    storage.secretsKey.grantDecrypt(this.webhooks); // the only role that may decrypt them
    this.webhooks.addEnvironment('SECRETS_KEY_ID', storage.secretsKey.keyArn);
    storage.jobs.grantReadWriteData(this.webhooks); // delivery status
    queues.webhooks.grantSendMessages(this.webhooks); // delayed re-enqueue

    storage.jobs.grantReadWriteData(this.sweeper);
    storage.usage.grantReadWriteData(this.sweeper); // completes images whose event was lost (bills once)
    storage.results.grantRead(this.sweeper); // lists/reads results and reports
    storage.results.grantDelete(this.sweeper);
    storage.uploads.grantDelete(this.sweeper, 'inputs/*');
    queues.jobs.grantSendMessages(this.sweeper); // re-queues stalled images
    queues.webhooks.grantSendMessages(this.sweeper); // outbox

    storage.jobs.grantReadWriteData(this.dlq);
    storage.uploads.grantDelete(this.dlq, 'inputs/*'); // a failed image's original is deleted too
    queues.webhooks.grantSendMessages(this.dlq); // "image failed" webhook

    // --- events
    // Results are written last (after the report), so their creation means "image done".
    // Through SQS, not an asynchronous invoke (which drops the event after two retries): a failing completion
    // leaves events on the queue, then in its DLQ (alarmed); the sweeper reconciles anything left behind.
    storage.results.addEventNotification(
      s3.EventType.OBJECT_CREATED,
      new s3n.SqsDestination(queues.completion),
      {
        prefix: 'results/',
      },
    );
    this.complete.addEventSource(
      new SqsEventSource(queues.completion, { batchSize: 10, reportBatchItemFailures: true }),
    );
    new events.Rule(this, 'SweepSchedule', {
      description: 'webhook outbox and stalled-image reconciler',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(this.sweeper)],
    });
    // Partial batch responses: one bad message must not make a whole batch retry.
    this.webhooks.addEventSource(
      new SqsEventSource(queues.webhooks, {
        batchSize: WEBHOOK_BATCH_SIZE,
        reportBatchItemFailures: true,
        maxConcurrency: 10,
      }),
    );
    this.dlq.addEventSource(
      new SqsEventSource(queues.jobsDlq, { batchSize: 10, reportBatchItemFailures: true }),
    );

    // --- HTTP API: cheaper and lower-latency than a REST API, and its stage throttling protects the
    // account's Lambda concurrency (a function URL has no throttling at all). Per-key rate limits are
    // enforced by the API itself (a token bucket per key), so REST usage plans are not needed.
    this.httpApi = new apigw.HttpApi(this, 'HttpApi', {
      description: 'FALCO anonymization API',
      defaultIntegration: new HttpLambdaIntegration('ApiIntegration', this.api, {
        payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
      }),
      createDefaultStage: false,
    });
    this.apiRoute = this.httpApi.node.findChild('DefaultRoute');
    const accessLogs = new logs.LogGroup(this, 'ApiAccessLogs', { retention: logs.RetentionDays.ONE_MONTH });
    this.stage = this.httpApi.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.apiRateLimit, burstLimit: props.apiBurstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.jsonWithStandardFields(),
      },
    });
  }
}
