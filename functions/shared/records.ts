/** DynamoDB item shapes. Tables: pk (S) + sk (S), TTL attribute `ttl`; jobs table GSI gsi1 (gsi1pk, gsi1sk). */
import type { AnonymizeOptions, ImageReport, OutputFormat } from '../pipeline/types.js';
import type { EncryptedSecret } from './secrets.js';

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'deleted';
export type ImageStatus = 'queued' | 'processing' | 'done' | 'failed';
export type WebhookStatus = 'none' | 'pending' | 'enqueued' | 'delivered' | 'failed';

export const TERMINAL_IMAGE: readonly ImageStatus[] = ['done', 'failed'];

/** pk JOB#{jobId}, sk JOB. Listed per tenant through gsi1 (gsi1pk TENANT#{tenant}, gsi1sk {jobId}). */
export interface JobItem {
  pk: string;
  sk: 'JOB';
  gsi1pk: string;
  gsi1sk: string;
  jobId: string;
  tenant: string;
  status: JobStatus;
  createdAt: string;
  updatedAt: string;
  completedAt?: string;
  /** YYYY-MM of creation: the month the job's images are billed to (fixed so retries never move a charge). */
  billingMonth: string;
  imageCount: number;
  options: AnonymizeOptions;
  webhookUrl?: string;
  webhookStatus: WebhookStatus;
  webhookAttempts?: number;
  webhookLastError?: string;
  idempotencyKeyHash?: string;
  /**
   * True from the job's write until its image messages are on the queue. A creating request that died in between
   * leaves it set: the sweeper enqueues the job's queued images once that request must be dead.
   */
  enqueuePending?: boolean;
  /** The delivery attempt allowed to run next (set when the job enters the outbox). */
  webhookNextAttempt?: number;
  /** epoch ms until which a dispatcher holds the current attempt. */
  webhookLeaseUntil?: number;
  /** epoch ms when the attempt in flight started (the "sending" mark; removed with the lease by any outcome). */
  webhookSendingSince?: number;
  /** Attempts sent again because their sender died with the outcome unknown (possible redeliveries). */
  webhookResends?: number;
  /** Sparse outbox index (gsi2): present while the webhook waits to be enqueued. */
  gsi2pk?: string;
  gsi2sk?: string;
  ttl: number;
}

/** pk JOB#{jobId}, sk IMG#{imageId}. */
export interface ImageItem {
  pk: string;
  sk: string;
  jobId: string;
  imageId: string;
  tenant: string;
  index: number;
  status: ImageStatus;
  progress: number;
  stage?: string;
  filename?: string;
  inputKey: string;
  inputBytes: number;
  inputFormat: OutputFormat;
  width: number;
  height: number;
  outputFormat: OutputFormat;
  resultKey?: string;
  reportKey?: string;
  contentType?: string;
  report?: ImageReport;
  error?: { code: string; detail: string };
  billed?: boolean;
  startedAt?: string;
  completedAt?: string;
  updatedAt: string;
  /** How many times the reconciler re-queued this image after a stall. */
  reconciled?: number;
  /** Sparse in-flight index (gsi2): present while processing, for the reconciler. */
  gsi2pk?: string;
  gsi2sk?: string;
  ttl: number;
}

/** Jobs table, pk IDEM#{tenant}#{sha256(key)}, sk IDEM. */
export interface IdempotencyItem {
  pk: string;
  sk: 'IDEM';
  tenant: string;
  bodyHash: string;
  jobId: string;
  createdAt: string;
  /** in-progress while the request that claimed it runs (until lockUntil, epoch s); done once its job exists. */
  state?: 'in-progress' | 'done';
  lockUntil?: number;
  ttl: number;
}

/** Keys table, pk KEY#{sha256(apiKey)}, sk KEY. */
export interface ApiKeyItem {
  pk: string;
  sk: 'KEY';
  tenant: string;
  keyId: string;
  name: string;
  createdAt: string;
  revoked?: boolean;
}

/**
 * Keys table, pk TENANT#{tenant}, sk TENANT. The webhook secret must be readable to sign, so it is not hashed:
 * it is envelope-encrypted (shared/secrets.ts; only the webhooks function may decrypt).
 */
export interface TenantItem {
  pk: string;
  sk: 'TENANT';
  tenant: string;
  webhookSecretEnc: EncryptedSecret;
  /** Legacy plain secret of tenants created before encryption; replaced on the next rotation. */
  webhookSecret?: string;
  createdAt: string;
  rotatedAt?: string;
}

/** Usage table, pk USAGE#{tenant}#{YYYY-MM}, sk IMG#{jobId}#{imageId}: one item per billed image. */
export interface UsageItem {
  pk: string;
  sk: string;
  tenant: string;
  jobId: string;
  imageId: string;
  month: string;
  billedAt: string;
}

/** One SQS message on the jobs queue = one image. */
export interface ImageMessage {
  v: 1;
  tenant: string;
  jobId: string;
  imageId: string;
  inputKey: string;
  options: AnonymizeOptions;
  outputFormat: OutputFormat;
}

/** One SQS message on the webhooks queue = one delivery attempt. */
export interface WebhookMessage {
  v: 1;
  jobId: string;
  tenant: string;
  attempt: number;
  /** epoch ms before which the attempt must not run (delays beyond SQS's 900 s cap are chained). */
  notBefore?: number;
}

export const jobPk = (jobId: string) => `JOB#${jobId}`;
export const imageSk = (imageId: string) => `IMG#${imageId}`;
export const tenantGsi = (tenant: string) => `TENANT#${tenant}`;
export const usagePk = (tenant: string, month: string) => `USAGE#${tenant}#${month}`;
export const usageSk = (jobId: string, imageId: string) => `IMG#${jobId}#${imageId}`;
