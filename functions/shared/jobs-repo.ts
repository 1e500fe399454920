/** Jobs table access. All state transitions are conditional writes so that retries and races are harmless. */
import {
  BatchWriteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type UpdateCommandInput,
  DeleteCommand,
} from '@aws-sdk/lib-dynamodb';
import type { ServiceContext } from './context.js';
import { isConditionalCheckFailed } from './aws.js';
import {
  imageSk,
  jobPk,
  tenantGsi,
  type IdempotencyItem,
  type ImageItem,
  type JobItem,
  type ImageStatus,
  type WebhookStatus,
} from './records.js';
import type { ImageReport } from '../pipeline/types.js';
import { IMAGE, JOB, WEBHOOK, legalSources, type Machine } from './states.js';
import { releaseInFlight } from './admission.js';
import { isId } from './ids.js';

/** gsi2 partitions: the webhook outbox and the images in flight (both sparse: the key exists only while listed). */
export const OUTBOX_INDEX = 'OUTBOX';
export const PROCESSING_INDEX = 'PROCESSING';
export const OPEN_INDEX = 'OPEN';

/** A conditional update: true when it applied, false when its condition did not hold. */
async function updateIf(ctx: ServiceContext, input: UpdateCommandInput): Promise<boolean> {
  try {
    await ctx.clients.ddb.send(new UpdateCommand(input));
    return true;
  } catch (err) {
    if (isConditionalCheckFailed(err)) return false;
    throw err;
  }
}

/** Every item under a job's partition (the job and its images), all pages, strongly consistent. */
async function jobPartition(
  ctx: ServiceContext,
  jobId: string,
  projection?: string,
): Promise<Array<Record<string, unknown>>> {
  const items: Array<Record<string, unknown>> = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await ctx.clients.ddb.send(
      new QueryCommand({
        TableName: ctx.cfg.jobsTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': jobPk(jobId) },
        ConsistentRead: true,
        ExclusiveStartKey: start,
        ...(projection ? { ProjectionExpression: projection } : {}),
      }),
    );
    items.push(...(out.Items ?? []));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}

export async function getJobWithImages(
  ctx: ServiceContext,
  jobId: string,
): Promise<{ job: JobItem; images: ImageItem[] } | null> {
  let job: JobItem | undefined;
  const images: ImageItem[] = [];
  for (const item of await jobPartition(ctx, jobId)) {
    if (item.sk === 'JOB') job = item as unknown as JobItem;
    else if (typeof item.sk === 'string' && item.sk.startsWith('IMG#'))
      images.push(item as unknown as ImageItem);
  }
  if (!job) return null;
  images.sort((a, b) => a.index - b.index);
  return { job, images };
}

export async function getJob(ctx: ServiceContext, jobId: string): Promise<JobItem | null> {
  const out = await ctx.clients.ddb.send(
    new GetCommand({
      TableName: ctx.cfg.jobsTable,
      Key: { pk: jobPk(jobId), sk: 'JOB' },
      ConsistentRead: true,
    }),
  );
  return (out.Item as JobItem | undefined) ?? null;
}

export async function getImage(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
): Promise<ImageItem | null> {
  const out = await ctx.clients.ddb.send(
    new GetCommand({
      TableName: ctx.cfg.jobsTable,
      Key: { pk: jobPk(jobId), sk: imageSk(imageId) },
      ConsistentRead: true,
    }),
  );
  return (out.Item as ImageItem | undefined) ?? null;
}

/** Images first, job item last: a job is only visible once all its images exist. */
export async function putJob(ctx: ServiceContext, job: JobItem, images: ImageItem[]): Promise<void> {
  for (let i = 0; i < images.length; i += 25) {
    let items: Record<string, unknown>[] = images.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
    for (let attempt = 0; items.length > 0; attempt++) {
      if (attempt > 5) throw new Error('DynamoDB kept returning unprocessed items while writing job images');
      const out = await ctx.clients.ddb.send(
        new BatchWriteCommand({ RequestItems: { [ctx.cfg.jobsTable]: items as never } }),
      );
      items = (out.UnprocessedItems?.[ctx.cfg.jobsTable] as Record<string, unknown>[] | undefined) ?? [];
      if (items.length) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
    }
  }
  // Open jobs are listed in gsi2 (OPEN) until they finish: the sweeper finishes any whose last step died.
  await ctx.clients.ddb.send(
    new PutCommand({
      TableName: ctx.cfg.jobsTable,
      Item: { ...job, gsi2pk: OPEN_INDEX, gsi2sk: `${job.createdAt}#${job.jobId}` },
      ConditionExpression: 'attribute_not_exists(pk)',
    }),
  );
}

/**
 * What a request that died before writing its job item may have left under the job's key: image items (they are
 * written first). A retry that takes over its idempotency key, and so its job id, removes them before writing
 * its own, or the job would count images nobody queued. Returns how many were removed.
 */
export async function discardPartialJob(ctx: ServiceContext, jobId: string): Promise<number> {
  const items = await jobPartition(ctx, jobId, 'pk, sk');
  if (items.some((i) => i.sk === 'JOB')) throw new Error(`job ${jobId} exists: not a partial write`);
  for (const i of items)
    await ctx.clients.ddb.send(
      new DeleteCommand({ TableName: ctx.cfg.jobsTable, Key: { pk: i.pk, sk: i.sk } }),
    );
  return items.length;
}

export interface ListPage {
  jobs: JobItem[];
  nextKey?: Record<string, unknown>;
}

export async function listJobs(
  ctx: ServiceContext,
  tenant: string,
  limit: number,
  startKey?: Record<string, unknown>,
): Promise<ListPage> {
  const out = await ctx.clients.ddb.send(
    new QueryCommand({
      TableName: ctx.cfg.jobsTable,
      IndexName: 'gsi1',
      KeyConditionExpression: 'gsi1pk = :t',
      ExpressionAttributeValues: { ':t': tenantGsi(tenant) },
      ScanIndexForward: false,
      Limit: limit,
      ExclusiveStartKey: startKey,
    }),
  );
  return { jobs: (out.Items ?? []) as JobItem[], nextKey: out.LastEvaluatedKey };
}

export interface TransitionSpec<S extends string> {
  key: { jobId: string; imageId?: string };
  to: S;
  /** Narrow the sources to these declared ones (default: every declared source of `to`). */
  from?: readonly S[];
  set?: Record<string, unknown>;
  /** Attributes written only if absent (e.g. the first start time). */
  setIfAbsent?: Record<string, unknown>;
  /** Numeric attributes incremented by the given amount. */
  add?: Record<string, number>;
  remove?: readonly string[];
  /** An extra condition (placeholders `#x`/`:x` must come with `names`/`values`). */
  also?: { expr: string; names?: Record<string, string>; values?: Record<string, unknown> };
}

/**
 * The one writer of states: moves a job, image or job's webhook along a declared edge of `states.ts`, in one
 * conditional update whose condition is the edge's set of source states. True when it applied; false when the
 * record was elsewhere (already moved, deleted, or never existed) — at-least-once callers treat that as done.
 */
export async function transition<S extends string>(
  ctx: ServiceContext,
  machine: Machine<S>,
  spec: TransitionSpec<S>,
): Promise<boolean> {
  const sources = legalSources(machine, spec.to, spec.from);
  const names: Record<string, string> = { '#st': machine.attribute, ...(spec.also?.names ?? {}) };
  const values: Record<string, unknown> = {
    ':to': spec.to,
    ':now': new Date(ctx.now()).toISOString(),
    ...(spec.also?.values ?? {}),
  };
  const sets = ['#st = :to', 'updatedAt = :now'];
  let n = 0;
  const ref = (attr: string, value: unknown) => {
    names[`#a${n}`] = attr;
    values[`:a${n}`] = value;
    return [`#a${n}`, `:a${n++}`] as const;
  };
  for (const [k, v] of Object.entries(spec.set ?? {})) {
    const [a, b] = ref(k, v);
    sets.push(`${a} = ${b}`);
  }
  for (const [k, v] of Object.entries(spec.setIfAbsent ?? {})) {
    const [a, b] = ref(k, v);
    sets.push(`${a} = if_not_exists(${a}, ${b})`);
  }
  let update = `SET ${sets.join(', ')}`;
  const adds = Object.entries(spec.add ?? {}).map(([k, v]) => ref(k, v).join(' '));
  if (adds.length) update += ` ADD ${adds.join(', ')}`;
  const removes = (spec.remove ?? []).map((k) => {
    names[`#r${n}`] = k;
    return `#r${n++}`;
  });
  if (removes.length) update += ` REMOVE ${removes.join(', ')}`;
  sources.forEach((s, i) => (values[`:from${i}`] = s));
  const cond =
    `attribute_exists(pk) AND (${sources.map((_, i) => `#st = :from${i}`).join(' OR ')})` +
    (spec.also ? ` AND (${spec.also.expr})` : '');
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(spec.key.jobId), sk: spec.key.imageId ? imageSk(spec.key.imageId) : 'JOB' },
    UpdateExpression: update,
    ConditionExpression: cond,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  });
}

/** The job's image messages are on the queue: clear the flag the sweeper looks for (see JobItem.enqueuePending). */
export async function markJobEnqueued(ctx: ServiceContext, jobId: string): Promise<void> {
  await updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: 'JOB' },
    UpdateExpression: 'REMOVE enqueuePending',
    ConditionExpression: 'attribute_exists(pk)',
  });
}

/** queued → running on the first image picked up; a no-op afterwards. */
export async function markJobRunning(ctx: ServiceContext, jobId: string): Promise<void> {
  await transition(ctx, JOB, { key: { jobId }, to: 'running' });
}

/**
 * queued|processing → processing. False when the image is terminal (a redelivered message) or gone. The image
 * enters the reconciler's index (gsi2 `PROCESSING`, sorted by the time of this start).
 */
export async function markImageProcessing(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
): Promise<boolean> {
  const now = new Date(ctx.now()).toISOString();
  return transition(ctx, IMAGE, {
    key: { jobId, imageId },
    to: 'processing',
    set: { progress: 0, gsi2pk: PROCESSING_INDEX, gsi2sk: `${now}#${jobId}#${imageId}` },
    setIfAbsent: { startedAt: now },
  });
}

/**
 * Progress while processing (not a transition). False when the image is no longer processing — terminal,
 * re-queued or erased — which tells the worker to abort its work.
 */
export async function recordProgress(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  fraction: number,
  stage: string,
): Promise<boolean> {
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: imageSk(imageId) },
    UpdateExpression: 'SET progress = :f, stage = :st, updatedAt = :now',
    ConditionExpression: '#s = :p',
    ExpressionAttributeNames: { '#s': 'status' },
    ExpressionAttributeValues: {
      ':f': Math.round(fraction * 1000) / 1000,
      ':st': stage,
      ':p': 'processing',
      ':now': new Date(ctx.now()).toISOString(),
    },
  });
}

/** → done. False when it was already terminal (duplicate S3 event). */
export async function markImageDone(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  fields: { tenant: string; resultKey: string; reportKey: string; contentType: string; report?: ImageReport },
): Promise<boolean> {
  return enterTerminal(ctx, fields.tenant, {
    key: { jobId, imageId },
    to: 'done',
    set: {
      progress: 1,
      stage: 'done',
      resultKey: fields.resultKey,
      reportKey: fields.reportKey,
      contentType: fields.contentType,
      billed: true,
      completedAt: new Date(ctx.now()).toISOString(),
      ...(fields.report ? { report: fields.report } : {}),
    },
    // Stays in the in-flight index until billed (clearBilledImage): a crash between this write and the usage
    // item leaves it for the reconciler to bill.
  });
}

export async function markImageFailed(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  code: string,
  detail: string,
  tenant: string,
): Promise<boolean> {
  return enterTerminal(ctx, tenant, {
    key: { jobId, imageId },
    to: 'failed',
    set: {
      error: { code, detail: detail.slice(0, 1000) },
      billed: false,
      completedAt: new Date(ctx.now()).toISOString(),
    },
    remove: ['gsi2pk', 'gsi2sk'],
  });
}

/**
 * An image's transition to done or failed, with what every terminal entry implies: the tenant's in-flight slot
 * (admission) goes back — only when the transition applied, so a replay never releases twice.
 */
async function enterTerminal(
  ctx: ServiceContext,
  tenant: string,
  spec: TransitionSpec<ImageStatus> & { key: { jobId: string; imageId: string } },
): Promise<boolean> {
  const applied = await transition(ctx, IMAGE, spec);
  if (applied) await releaseInFlight(ctx, tenant);
  return applied;
}

/** A done image is billed: it leaves the reconciler's index (which kept it in case billing never happened). */
export async function clearBilledImage(ctx: ServiceContext, jobId: string, imageId: string): Promise<void> {
  await updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: imageSk(imageId) },
    UpdateExpression: 'REMOVE gsi2pk, gsi2sk',
    ConditionExpression: '#s = :done',
    ExpressionAttributeNames: { '#s': 'status' },
    ExpressionAttributeValues: { ':done': 'done' },
  });
}

/** processing → queued: the reconciler hands a stalled image (no result, no live worker) back for a new attempt. */
export async function requeueStalledImage(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  staleBefore: string,
): Promise<boolean> {
  return transition(ctx, IMAGE, {
    key: { jobId, imageId },
    to: 'queued',
    from: ['processing'],
    add: { reconciled: 1 },
    remove: ['gsi2pk', 'gsi2sk'],
    // Only if no worker wrote progress since the deadline (a live worker keeps updatedAt fresh).
    also: { expr: 'updatedAt < :stale', values: { ':stale': staleBefore } },
  });
}

/**
 * queued|running → completed|failed. Exactly one caller wins. A job with a webhook enters the outbox in the same
 * write (gsi2 `OUTBOX`, webhookStatus stays `pending` with attempt 1 next): whatever happens after this write,
 * the dispatcher sweep will find and deliver it.
 */
export async function finishJob(
  ctx: ServiceContext,
  job: JobItem,
  status: 'completed' | 'failed',
): Promise<boolean> {
  const now = new Date(ctx.now()).toISOString();
  return transition(ctx, JOB, {
    key: { jobId: job.jobId },
    to: status,
    from: ['queued', 'running'],
    set: {
      completedAt: now,
      webhookStatus: job.webhookUrl ? 'pending' : 'none',
      ...(job.webhookUrl
        ? { gsi2pk: OUTBOX_INDEX, gsi2sk: `${now}#${job.jobId}`, webhookNextAttempt: 1 }
        : {}),
    },
    // Leaves the OPEN list (or moves to the outbox above).
    ...(job.webhookUrl ? {} : { remove: ['gsi2pk', 'gsi2sk'] }),
  });
}

/** Move a job's webhook along its machine (see WEBHOOK in states.ts); leaving `pending` leaves the outbox. */
export async function setWebhookState(
  ctx: ServiceContext,
  jobId: string,
  state: {
    status: 'enqueued' | 'delivered' | 'failed';
    attempts?: number;
    nextAttempt?: number;
    lastError?: string;
  },
  onlyFrom?: WebhookStatus[],
): Promise<boolean> {
  const set: Record<string, unknown> = {};
  if (state.attempts !== undefined) set.webhookAttempts = state.attempts;
  if (state.nextAttempt !== undefined) set.webhookNextAttempt = state.nextAttempt;
  if (state.lastError !== undefined) set.webhookLastError = state.lastError.slice(0, 300);
  return transition(ctx, WEBHOOK, {
    key: { jobId },
    to: state.status,
    from: onlyFrom,
    set,
    remove: ['gsi2pk', 'gsi2sk', 'webhookLeaseUntil', 'webhookSendingSince'],
  });
}

/**
 * Claim delivery attempt `attempt` of a job's webhook: only the attempt that is next, and only if no other
 * dispatcher holds a live lease on it. Duplicate queue messages (the eager enqueue and the outbox sweep both
 * sent attempt 1; SQS redelivered) lose here, so an endpoint sees each attempt at most once per lease.
 *
 * The lease is also the attempt's "sending" mark (`webhookSendingSince`, the attempt's start): every outcome
 * removes it, so a claim that finds an expired one knows the previous sender died mid-attempt with an unknown
 * outcome. The endpoint may have received it; sending again is the at-least-once redelivery that receivers drop by
 * `webhook-id`. Such a claim is `resend` and counts itself in `webhookResends` in the same write, so every
 * redelivery is on the books.
 */
export async function claimWebhookAttempt(
  ctx: ServiceContext,
  jobId: string,
  attempt: number,
  leaseMs: number,
): Promise<'claimed' | 'resend' | 'busy' | 'stale'> {
  const now = ctx.now();
  const claim = (resend: boolean) =>
    updateIf(ctx, {
      TableName: ctx.cfg.jobsTable,
      Key: { pk: jobPk(jobId), sk: 'JOB' },
      UpdateExpression:
        'SET webhookLeaseUntil = :until, webhookSendingSince = :now, webhookAttempts = :n' +
        (resend ? ' ADD webhookResends :one' : ''),
      ConditionExpression:
        'attribute_exists(pk) AND (#w = :p OR #w = :e) AND webhookNextAttempt = :n AND ' +
        (resend ? 'webhookLeaseUntil < :now' : 'attribute_not_exists(webhookLeaseUntil)'),
      ExpressionAttributeNames: { '#w': 'webhookStatus' },
      ExpressionAttributeValues: {
        ':p': 'pending',
        ':e': 'enqueued',
        ':n': attempt,
        ':now': now,
        ':until': now + leaseMs,
        ...(resend ? { ':one': 1 } : {}),
      },
    });
  if (await claim(false)) return 'claimed';
  if (await claim(true)) return 'resend';
  const job = await getJob(ctx, jobId);
  const live =
    job &&
    (job.webhookStatus === 'pending' || job.webhookStatus === 'enqueued') &&
    job.webhookNextAttempt === attempt;
  return live ? 'busy' : 'stale';
}

/** Jobs whose webhook is in the outbox since before `before` (ISO time): the dispatcher sweep's work list. */
export async function listOutbox(ctx: ServiceContext, before: string, limit = 100): Promise<string[]> {
  return queryIndex(ctx, OUTBOX_INDEX, before, limit);
}

/** Jobs open (queued or running) since before `before` (ISO time). */
export async function listOpenJobs(ctx: ServiceContext, before: string, limit = 100): Promise<string[]> {
  return queryIndex(ctx, OPEN_INDEX, before, limit);
}

/** Images processing since before `before` (ISO time): the reconciler's candidates. */
export async function listProcessingSince(
  ctx: ServiceContext,
  before: string,
  limit = 100,
): Promise<Array<{ jobId: string; imageId: string }>> {
  return (await queryIndex(ctx, PROCESSING_INDEX, before, limit)).map((k) => {
    const [jobId, imageId] = k.split('#');
    return { jobId, imageId };
  });
}

async function queryIndex(ctx: ServiceContext, pk: string, before: string, limit: number): Promise<string[]> {
  const out = await ctx.clients.ddb.send(
    new QueryCommand({
      TableName: ctx.cfg.jobsTable,
      IndexName: 'gsi2',
      KeyConditionExpression: 'gsi2pk = :pk AND gsi2sk < :before',
      ExpressionAttributeValues: { ':pk': pk, ':before': before },
      Limit: limit,
    }),
  );
  // gsi2sk = `{iso time}#{ids…}`: the ids follow the first '#'.
  return (out.Items ?? []).map((i) => String(i.gsi2sk).slice(String(i.gsi2sk).indexOf('#') + 1));
}

/** Tombstone: the job stays (status deleted, short ttl) so in-flight workers and events see it and stop. */
export async function markJobDeleted(ctx: ServiceContext, jobId: string): Promise<boolean> {
  return transition(ctx, JOB, {
    key: { jobId },
    to: 'deleted',
    set: { ttl: Math.floor(ctx.now() / 1000) + 86400 },
    remove: ['gsi1pk', 'gsi1sk', 'gsi2pk', 'gsi2sk'],
  });
}

export async function deleteImageItems(
  ctx: ServiceContext,
  jobId: string,
  imageIds: string[],
): Promise<void> {
  for (const imageId of imageIds) {
    await ctx.clients.ddb.send(
      new DeleteCommand({ TableName: ctx.cfg.jobsTable, Key: { pk: jobPk(jobId), sk: imageSk(imageId) } }),
    );
  }
}

/** What a request got when it asked for an idempotency key. */
export type IdempotencyClaim =
  /**
   * This request holds the key and creates job `jobId`. `resumed`: it took the key over from a request that died
   * holding it before its job was written; the job id is the dead request's own, recorded when it took the key.
   */
  | { kind: 'owned'; jobId: string; resumed: boolean }
  /** Another request holds it (in progress, lock live) or it names an existing job: replay or 409. */
  | { kind: 'held'; item: IdempotencyItem };

/**
 * Claim an idempotency key. The job id is recorded in the key when it is taken, before the job is written, so
 * whatever happens to the request afterwards the key names the one job it may create:
 *  - absent or expired (DynamoDB TTL deletes lazily, so an expired item may still be there): one conditional put
 *    takes it with a fresh job id; two racing requests cannot both win, unlike a get-then-put;
 *  - held in progress by a request whose lock expired (it crashed or timed out: the lock outlives the API
 *    function's timeout, so that request is dead): if its job exists, it died between writing the job and
 *    completing the key, so the key is completed and the retry replays that job; if not, the key is taken over
 *    with a conditional update that keeps the recorded job id (one winner), and the retry creates that job;
 *  - naming a job that was erased (or is gone): released and claimed afresh.
 *
 * Why not `@aws-lambda-powertools/idempotency`: it caches the first *response* and replays it, while a replay
 * here must answer the job's *current* state; its records live in its own key schema (one more table or
 * attribute set for the stack and the emulators), it cannot scope a key to a tenant plus a body hash the way the
 * API's 409 `idempotency-key-reused` needs, it has no way to free a key when its job is erased, and its expired
 * in-progress record is simply overwritten, which is the very gap (a second job) closed here.
 */
export async function claimIdempotencyKey(
  ctx: ServiceContext,
  item: IdempotencyItem,
): Promise<IdempotencyClaim> {
  const read = async () =>
    (
      await ctx.clients.ddb.send(
        new GetCommand({
          TableName: ctx.cfg.jobsTable,
          Key: { pk: item.pk, sk: 'IDEM' },
          ConsistentRead: true,
        }),
      )
    ).Item as IdempotencyItem | undefined;
  // Each round ends with a claim or a write that changed the key; contention past a few rounds is a 409 (retry).
  for (let round = 0; round < 3; round++) {
    const nowS = Math.floor(ctx.now() / 1000);
    try {
      await ctx.clients.ddb.send(
        new PutCommand({
          TableName: ctx.cfg.jobsTable,
          Item: item,
          ConditionExpression: 'attribute_not_exists(pk) OR #ttl < :now',
          ExpressionAttributeNames: { '#ttl': 'ttl' },
          ExpressionAttributeValues: { ':now': nowS },
        }),
      );
      return { kind: 'owned', jobId: item.jobId, resumed: false };
    } catch (err) {
      if (!isConditionalCheckFailed(err)) throw err;
    }
    const held = await read();
    if (!held) continue; // released between the two calls
    const inProgress = held.state === 'in-progress';
    if (inProgress && (held.lockUntil ?? 0) >= nowS) return { kind: 'held', item: held };
    // The recorded id reaches a table key: only an id of the exact format is looked up.
    const job = isId('job', held.jobId) ? await getJob(ctx, held.jobId) : null;
    if (job && job.status !== 'deleted') {
      if (inProgress) await completeIdempotencyKey(ctx, item.pk, held.jobId);
      return { kind: 'held', item: { ...held, state: 'done' } };
    }
    if (inProgress && isId('job', held.jobId)) {
      const took = await updateIf(ctx, {
        TableName: ctx.cfg.jobsTable,
        Key: { pk: item.pk, sk: 'IDEM' },
        UpdateExpression: 'SET bodyHash = :b, lockUntil = :lock, createdAt = :c, #ttl = :ttl',
        // One winner among racing retries: the lock must still be the expired one this request read.
        ConditionExpression: `#state = :prog AND jobId = :j AND ${
          held.lockUntil === undefined ? 'attribute_not_exists(lockUntil)' : 'lockUntil = :old'
        }`,
        ExpressionAttributeNames: { '#state': 'state', '#ttl': 'ttl' },
        ExpressionAttributeValues: {
          ':b': item.bodyHash,
          ':lock': item.lockUntil,
          ':c': item.createdAt,
          ':ttl': item.ttl,
          ':prog': 'in-progress',
          ...(held.lockUntil === undefined ? {} : { ':old': held.lockUntil }),
          ':j': held.jobId,
        },
      });
      if (took) return { kind: 'owned', jobId: held.jobId, resumed: true };
      continue;
    }
    // Done, but its job was erased or is gone (or the record is unusable): the key is free.
    await releaseIdempotencyKey(ctx, item.pk, held.jobId);
  }
  // Gone or changing under us every time: report it as held so the caller retries rather than racing.
  return { kind: 'held', item: { ...item, jobId: '', state: 'in-progress' } };
}

/** in-progress → done once the job exists (only by the request that holds the key). */
export async function completeIdempotencyKey(
  ctx: ServiceContext,
  pk: string,
  jobId: string,
): Promise<boolean> {
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk, sk: 'IDEM' },
    UpdateExpression: 'SET #state = :done REMOVE lockUntil',
    ConditionExpression: 'jobId = :j',
    ExpressionAttributeNames: { '#state': 'state' },
    ExpressionAttributeValues: { ':done': 'done', ':j': jobId },
  });
}

/** Free a key that (still) points at `jobId`: the request failed, or its job was erased. */
export async function releaseIdempotencyKey(ctx: ServiceContext, pk: string, jobId: string): Promise<void> {
  try {
    await ctx.clients.ddb.send(
      new DeleteCommand({
        TableName: ctx.cfg.jobsTable,
        Key: { pk, sk: 'IDEM' },
        ConditionExpression: 'jobId = :j',
        ExpressionAttributeValues: { ':j': jobId },
      }),
    );
  } catch (err) {
    if (!isConditionalCheckFailed(err)) throw err;
  }
}
