import { CfnOutput, Duration, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { parseS3Uri, type ServiceConfig } from '../config.js';
import {
  Functions,
  LAMBDA_ARCHITECTURE,
  WEBHOOK_DELIVERY_DEADLINE_MS,
  WEBHOOK_FUNCTION_TIMEOUT,
  type FunctionName,
} from '../constructs/functions.js';
import { Observability } from '../constructs/observability.js';
import { JOBS_RETENTION_DAYS, Queues } from '../constructs/queues.js';
import { SharpLayer } from '../constructs/sharp-layer.js';
import { Storage } from '../constructs/storage.js';
import { Workers } from '../constructs/workers.js';
import { addNagSuppressions } from '../nag.js';

export interface ServiceStackProps extends StackProps {
  readonly config: ServiceConfig;
  /** Repository root (entries, lockfile, Dockerfile are resolved from it). */
  readonly repoRoot: string;
  /** Tests only: skip esbuild bundling (see FunctionsProps.functionCode). */
  readonly functionCode?: (name: FunctionName) => lambda.Code;
  /** Tests only: skip the worker Docker asset. */
  readonly workerImage?: ecs.ContainerImage;
  /** sharp layer directory (default layers/sharp/dist). */
  readonly sharpLayerDir?: string;
  /** Fail synth when the sharp layer is not built (default true; -c requireSharpLayer=false for an offline look). */
  readonly requireSharpLayer?: boolean;
}

/**
 * The whole service in one stack. One stack on purpose: the results bucket notifies the
 * completion function, which reads the bucket — split across stacks that is a dependency cycle,
 * and nothing here has a separate lifecycle that would justify the cross-stack plumbing.
 */
export class ServiceStack extends Stack {
  readonly storage: Storage;
  readonly queues: Queues;
  readonly functions: Functions;
  readonly workers: Workers;
  readonly observability: Observability;
  readonly sharpLayer: SharpLayer;
  readonly bundleUri: string;

  constructor(scope: Construct, id: string, props: ServiceStackProps) {
    super(scope, id, props);
    const cfg = props.config;
    Tags.of(this).add('project', 'falco-anonymizer');
    Tags.of(this).add('stage', cfg.stage);

    this.storage = new Storage(this, 'Storage', {
      retentionDays: cfg.retentionDays,
      retainData: cfg.retainData,
      inputRetentionDays: JOBS_RETENTION_DAYS,
      createModelsBucket: cfg.bundleUri === undefined,
    });
    this.queues = new Queues(this, 'Queues', {
      jobVisibilitySeconds: cfg.jobVisibilitySeconds,
      webhookFunctionTimeout: WEBHOOK_FUNCTION_TIMEOUT,
      retainData: cfg.retainData,
    });

    const bundle = cfg.bundleUri
      ? (() => {
          const { bucket, prefix } = parseS3Uri(cfg.bundleUri);
          return { bucket: s3.Bucket.fromBucketName(this, 'BundleBucket', bucket), prefix };
        })()
      : { bucket: this.storage.models!, prefix: 'bundles/current/' };
    this.bundleUri = `s3://${bundle.bucket.bucketName}/${bundle.prefix}`;

    // The contract: every function and the worker read the same variables.
    const environment: Record<string, string> = {
      STAGE: cfg.stage,
      UPLOADS_BUCKET: this.storage.uploads.bucketName,
      RESULTS_BUCKET: this.storage.results.bucketName,
      JOBS_TABLE: this.storage.jobs.tableName,
      KEYS_TABLE: this.storage.keys.tableName,
      USAGE_TABLE: this.storage.usage.tableName,
      JOBS_QUEUE_URL: this.queues.jobs.queueUrl,
      WEBHOOKS_QUEUE_URL: this.queues.webhooks.queueUrl,
      RETENTION_DAYS: String(cfg.retentionDays),
      LOG_LEVEL: cfg.logLevel,
      // The worker receives with the queue's configured visibility (jobVisibilitySeconds), extended by heartbeat.
      VISIBILITY_TIMEOUT: String(cfg.jobVisibilitySeconds),
      WEBHOOK_TIMEOUT_MS: String(WEBHOOK_DELIVERY_DEADLINE_MS),
    };

    this.sharpLayer = new SharpLayer(this, 'Sharp', {
      dir: props.sharpLayerDir,
      required: props.requireSharpLayer ?? true,
      architecture: LAMBDA_ARCHITECTURE,
    });
    this.functions = new Functions(this, 'Functions', {
      repoRoot: props.repoRoot,
      storage: this.storage,
      queues: this.queues,
      environment,
      sharpLayer: this.sharpLayer.layer,
      apiRateLimit: cfg.apiRateLimit,
      apiBurstLimit: cfg.apiBurstLimit,
      functionCode: props.functionCode,
    });
    this.workers = new Workers(this, 'Workers', {
      repoRoot: props.repoRoot,
      storage: this.storage,
      queues: this.queues,
      environment,
      instanceTypes: cfg.instanceTypes,
      minTasks: cfg.minTasks,
      maxTasks: cfg.maxTasks,
      backlogPerTask: cfg.backlogPerTask,
      spot: cfg.spot,
      bundle,
      memoryReservationMiB: cfg.workerMemoryMiB,
      volumeGiB: cfg.workerVolumeGiB,
      image: props.workerImage,
    });
    // Wake-up path (functions/shared/fleet.ts): the API sets the worker service's desired count to 1 when it
    // enqueues into an idle fleet, and reads the running count to tell customers their image waits for a GPU.
    const api = this.functions.api;
    api.addEnvironment('WORKER_CLUSTER', this.workers.cluster.clusterName);
    api.addEnvironment('WORKER_SERVICE', this.workers.service.serviceName);
    api.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['ecs:DescribeServices', 'ecs:UpdateService'],
        resources: [this.workers.service.serviceArn],
      }),
    );
    this.observability = new Observability(this, 'Observability', {
      stage: cfg.stage,
      queues: this.queues,
      functions: {
        api: this.functions.api,
        complete: this.functions.complete,
        webhooks: this.functions.webhooks,
        dlq: this.functions.dlq,
        sweeper: this.functions.sweeper,
      },
      httpApi: this.functions.httpApi,
      workers: this.workers,
      alarmEmail: cfg.alarmEmail,
      // A cold start (GPU instance boot + image pull + bundle download) takes ~10 minutes.
      maxJobWait: Duration.minutes(30),
    });

    new CfnOutput(this, 'ApiUrl', { value: this.functions.httpApi.apiEndpoint });
    new CfnOutput(this, 'UploadsBucketName', { value: this.storage.uploads.bucketName });
    new CfnOutput(this, 'ResultsBucketName', { value: this.storage.results.bucketName });
    new CfnOutput(this, 'BundleUri', { value: this.bundleUri, description: 'Upload the model bundle here' });
    new CfnOutput(this, 'ApiFunctionName', { value: this.functions.api.functionName });
    new CfnOutput(this, 'KeysTableName', { value: this.storage.keys.tableName });
    new CfnOutput(this, 'SecretsKeyArn', {
      value: this.storage.secretsKey.keyArn,
      description: 'SECRETS_KEY_ID for `npm run cli -- keys create|rotate-secret`',
    });
    new CfnOutput(this, 'JobsQueueUrl', { value: this.queues.jobs.queueUrl });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.observability.topic.topicArn });
    new CfnOutput(this, 'DashboardName', { value: `falco-${cfg.stage}` });
    new CfnOutput(this, 'ClusterName', { value: this.workers.cluster.clusterName });
    new CfnOutput(this, 'WorkerServiceName', { value: this.workers.service.serviceName });

    addNagSuppressions(this);
  }
}
