/**
 * Service configuration, read once from the environment. The names are the contract with the CDK stack
 * (see cdk/); local mode (STAGE=local) uses the same names plus the SDK's own AWS_ENDPOINT_URL_<SERVICE>.
 */

import { loadLimits, type ResourceLimits } from './limits.js';

/** The resource limits (functions/shared/limits.ts owns them). */
export type Limits = ResourceLimits;

export interface Config {
  stage: string;
  /** STAGE=local: emulators, loopback webhooks allowed, demo key printed. */
  local: boolean;
  region: string;
  uploadsBucket: string;
  resultsBucket: string;
  jobsTable: string;
  keysTable: string;
  usageTable: string;
  jobsQueueUrl: string;
  webhooksQueueUrl: string;
  retentionDays: number;
  bundleUri?: string;
  logLevel: string;
  limits: Limits;
  /** Lifetime of presigned result/report/upload URLs. */
  presignSeconds: number;
  rateLimit: { ratePerSecond: number; burst: number };
  webhook: {
    /** First retry delay; attempt n waits base·3^(n-1), capped at 12 h. Tests shrink it. */
    retryBaseSeconds: number;
    maxAttempts: number;
    timeoutMs: number;
  };
  /** How long an idempotency key is remembered. */
  idempotencyHours: number;
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
}

function num(env: NodeJS.ProcessEnv, name: string, dflt: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0)
    throw new Error(`environment variable ${name} must be a non-negative number, got "${raw}"`);
  return v;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const stage = env.STAGE ?? 'dev';
  return {
    stage,
    local: stage === 'local',
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    uploadsBucket: required(env, 'UPLOADS_BUCKET'),
    resultsBucket: required(env, 'RESULTS_BUCKET'),
    jobsTable: required(env, 'JOBS_TABLE'),
    keysTable: required(env, 'KEYS_TABLE'),
    usageTable: required(env, 'USAGE_TABLE'),
    jobsQueueUrl: required(env, 'JOBS_QUEUE_URL'),
    webhooksQueueUrl: required(env, 'WEBHOOKS_QUEUE_URL'),
    retentionDays: num(env, 'RETENTION_DAYS', 7),
    bundleUri: env.BUNDLE_URI || undefined,
    logLevel: env.LOG_LEVEL ?? 'INFO',
    limits: loadLimits(env),
    presignSeconds: num(env, 'PRESIGN_SECONDS', 900),
    rateLimit: { ratePerSecond: num(env, 'RATE_LIMIT_RPS', 20), burst: num(env, 'RATE_LIMIT_BURST', 40) },
    webhook: {
      retryBaseSeconds: num(env, 'WEBHOOK_RETRY_BASE_SECONDS', 10),
      maxAttempts: num(env, 'WEBHOOK_MAX_ATTEMPTS', 11),
      timeoutMs: num(env, 'WEBHOOK_TIMEOUT_MS', 10_000),
    },
    idempotencyHours: num(env, 'IDEMPOTENCY_HOURS', 24),
  };
}
