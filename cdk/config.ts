/**
 * Deployment configuration: everything an operator may change without editing code.
 *
 * Values come from CDK context (`-c key=value` on the command line, or a `context` block) so one
 * code base deploys several stages. Context values arrive as strings from the CLI but as JSON
 * values from cdk.json / tests, so every reader accepts both and rejects anything it cannot
 * interpret with a ConfigError naming the key — a typo must stop the synth, not deploy a
 * half-configured service.
 */

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`Invalid CDK context "${key}": ${message}`);
    this.name = 'ConfigError';
  }
}

export interface ServiceConfig {
  /** Deployment stage, part of every resource name; lowercase letters, digits, dashes. */
  readonly stage: string;
  /** EC2 instance types for GPU workers; the first is used on demand, all of them for Spot. */
  readonly instanceTypes: readonly string[];
  /** Lower bound of worker tasks; 0 lets the GPU fleet disappear when the queue is empty. */
  readonly minTasks: number;
  /** Upper bound of worker tasks (and of GPU instances: one task per instance). */
  readonly maxTasks: number;
  /** Jobs queue messages (in flight + waiting) one worker task is expected to carry. */
  readonly backlogPerTask: number;
  /** Run GPU workers on Spot instances (cheaper, interruptible). */
  readonly spot: boolean;
  /** Days results, reports and job records are kept. */
  readonly retentionDays: number;
  /** s3://bucket/prefix of the model bundle; undefined = the stack's own models bucket. */
  readonly bundleUri?: string;
  /** Visibility timeout of the jobs queue in seconds (the worker also extends it while busy). */
  readonly jobVisibilitySeconds: number;
  /** HTTP API stage throttling: steady-state requests per second and burst. */
  readonly apiRateLimit: number;
  readonly apiBurstLimit: number;
  /** Optional e-mail address subscribed to the alarm topic. */
  readonly alarmEmail?: string;
  /** Lambda / worker log level (LOG_LEVEL). */
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** Keep buckets and tables when the stack is deleted (default: only for stage "prod"). */
  readonly retainData: boolean;
  /** Worker memory reservation in MiB (the instance must have more). */
  readonly workerMemoryMiB: number;
  /** Root EBS volume of GPU instances in GiB (CUDA image + model bundle live there). */
  readonly workerVolumeGiB: number;
}

/** A context reader, so the parser does not depend on a construct (tests pass a plain map). */
export type ContextGetter = (key: string) => unknown;

const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
// Instance families that carry NVIDIA GPUs usable by the CUDA 12 image (ECS GPU AMI).
const GPU_FAMILY = /^(g4dn|g5|g5g|g6|g6e|gr6|g6f|p3|p3dn|p4d|p4de|p5|p5e|p5en)\.[0-9]*x?(large|metal)$/;

function readString(get: ContextGetter, key: string): string | undefined {
  const v = get(key);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(key, `expected a string, got ${JSON.stringify(v)}`);
  return v.trim();
}

function readInt(get: ContextGetter, key: string, dflt: number, min: number, max: number): number {
  const v = get(key);
  if (v === undefined || v === null || v === '') return dflt;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isInteger(n)) throw new ConfigError(key, `expected an integer, got ${JSON.stringify(v)}`);
  if (n < min || n > max) throw new ConfigError(key, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function readBool(get: ContextGetter, key: string, dflt: boolean): boolean {
  const v = get(key);
  if (v === undefined || v === null || v === '') return dflt;
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new ConfigError(key, `expected true or false, got ${JSON.stringify(v)}`);
}

/** Parses and validates the deployment configuration from CDK context. */
export function loadConfig(get: ContextGetter): ServiceConfig {
  const stage = readString(get, 'stage') ?? 'dev';
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(stage)) {
    throw new ConfigError(
      'stage',
      `must be 1-20 lowercase letters, digits or dashes starting with a letter, got "${stage}"`,
    );
  }

  const instanceTypes = (readString(get, 'instanceType') ?? 'g5.xlarge')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (instanceTypes.length === 0) throw new ConfigError('instanceType', 'no instance type given');
  for (const t of instanceTypes) {
    if (!GPU_FAMILY.test(t)) {
      throw new ConfigError(
        'instanceType',
        `"${t}" is not a known NVIDIA GPU instance type (e.g. g5.xlarge, g6.xlarge)`,
      );
    }
    if (t.startsWith('g5g.')) {
      // g5g is Graviton: the worker image and the onnxruntime CUDA build are x86_64 only.
      throw new ConfigError(
        'instanceType',
        `"${t}" is an arm64 GPU instance; the worker image is x86_64 only`,
      );
    }
  }

  const minTasks = readInt(get, 'minTasks', 0, 0, 100);
  const maxTasks = readInt(get, 'maxTasks', 4, 1, 100);
  if (maxTasks < minTasks)
    throw new ConfigError('maxTasks', `must be >= minTasks (${minTasks}), got ${maxTasks}`);

  const bundleUri = readString(get, 'bundleUri');
  if (bundleUri !== undefined && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(bundleUri)) {
    throw new ConfigError('bundleUri', `expected s3://bucket/prefix, got "${bundleUri}"`);
  }

  const logLevel = (readString(get, 'logLevel') ?? 'INFO').toUpperCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('logLevel', `expected one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }

  const alarmEmail = readString(get, 'alarmEmail');
  if (alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) {
    throw new ConfigError('alarmEmail', `not an e-mail address: "${alarmEmail}"`);
  }

  const apiRateLimit = readInt(get, 'apiRateLimit', 50, 1, 10_000);
  const apiBurstLimit = readInt(get, 'apiBurstLimit', 100, 1, 5_000);

  return {
    stage,
    instanceTypes,
    minTasks,
    maxTasks,
    backlogPerTask: readInt(get, 'backlogPerTask', 1, 1, 1000),
    spot: readBool(get, 'spot', false),
    retentionDays: readInt(get, 'retentionDays', 7, 1, 3650),
    bundleUri,
    // SQS caps the visibility timeout at 12 hours.
    jobVisibilitySeconds: readInt(get, 'jobVisibilitySeconds', 900, 60, 43_200),
    apiRateLimit,
    apiBurstLimit,
    alarmEmail,
    logLevel: logLevel as ServiceConfig['logLevel'],
    retainData: readBool(get, 'retainData', stage === 'prod'),
    workerMemoryMiB: readInt(get, 'workerMemoryMiB', 12_288, 1024, 1_048_576),
    workerVolumeGiB: readInt(get, 'workerVolumeGiB', 100, 40, 16_384),
  };
}

/** Parses `s3://bucket/prefix` into its parts (prefix without leading slash, may be empty). */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) throw new ConfigError('bundleUri', `expected s3://bucket/prefix, got "${uri}"`);
  return { bucket: m[1], prefix: m[2] };
}
