import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface QueuesProps {
  /** Visibility timeout of the jobs queue (worst-case optimization time plus margin). */
  readonly jobVisibilitySeconds: number;
  /** Timeout of the webhook dispatch Lambda; the queue's visibility must exceed it. */
  readonly webhookFunctionTimeout: Duration;
  readonly retainData: boolean;
}

/** Jobs queue delivers messages up to this many times before the DLQ handler marks the image failed. */
export const JOBS_MAX_RECEIVE_COUNT = 3;
/**
 * The webhook function itself re-enqueues failed deliveries with a delay (attempt counter in the
 * message), so a receive that still fails here is a crash of the function, not of the endpoint.
 */
export const WEBHOOKS_MAX_RECEIVE_COUNT = 5;
/** Completion retries (6-minute visibility each) before an S3 event goes to the completion DLQ. */
export const COMPLETION_MAX_RECEIVE_COUNT = 10;
/** How long a job message may wait for a worker; inputs in S3 are kept as long. */
export const JOBS_RETENTION_DAYS = 4;

export class Queues extends Construct {
  readonly jobs: sqs.Queue;
  readonly jobsDlq: sqs.Queue;
  readonly webhooks: sqs.Queue;
  readonly webhooksDlq: sqs.Queue;
  /** S3 ObjectCreated (results/) → completion function; events stay here while the function fails. */
  readonly completion: sqs.Queue;
  readonly completionDlq: sqs.Queue;

  constructor(scope: Construct, id: string, props: QueuesProps) {
    super(scope, id);
    const base = {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      removalPolicy: props.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    } satisfies sqs.QueueProps;

    this.jobsDlq = new sqs.Queue(this, 'JobsDlq', {
      ...base,
      retentionPeriod: Duration.days(14),
      // The DLQ handler Lambda consumes it: AWS asks for >= 6x the function timeout.
      visibilityTimeout: Duration.minutes(6),
    });
    this.jobs = new sqs.Queue(this, 'Jobs', {
      ...base,
      retentionPeriod: Duration.days(JOBS_RETENTION_DAYS),
      visibilityTimeout: Duration.seconds(props.jobVisibilitySeconds),
      // Long polling by default, so an idle worker costs few requests.
      receiveMessageWaitTime: Duration.seconds(20),
      deadLetterQueue: { queue: this.jobsDlq, maxReceiveCount: JOBS_MAX_RECEIVE_COUNT },
    });

    this.completionDlq = new sqs.Queue(this, 'CompletionDlq', {
      ...base,
      retentionPeriod: Duration.days(14),
    });
    this.completion = new sqs.Queue(this, 'Completion', {
      ...base,
      retentionPeriod: Duration.days(14),
      // AWS asks for >= 6x the consuming function's timeout (60 s).
      visibilityTimeout: Duration.minutes(6),
      // A bad deploy of the completion function keeps failing: ~an hour of retries before the DLQ (and its
      // alarm); the reconciler completes anything whose event ends there.
      deadLetterQueue: { queue: this.completionDlq, maxReceiveCount: COMPLETION_MAX_RECEIVE_COUNT },
    });

    this.webhooksDlq = new sqs.Queue(this, 'WebhooksDlq', {
      ...base,
      retentionPeriod: Duration.days(14),
    });
    this.webhooks = new sqs.Queue(this, 'Webhooks', {
      ...base,
      // Deliveries are retried for >= 24 h through re-enqueues, each a fresh message: 4 days is ample.
      retentionPeriod: Duration.days(4),
      visibilityTimeout: Duration.seconds(props.webhookFunctionTimeout.toSeconds() * 6),
      deadLetterQueue: { queue: this.webhooksDlq, maxReceiveCount: WEBHOOKS_MAX_RECEIVE_COUNT },
    });
  }
}
