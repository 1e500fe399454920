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
import { imageSk, jobPk, tenantGsi, type IdempotencyItem, type ImageItem, type JobItem } from './records.js';
import type { ImageReport } from '../pipeline/types.js';

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

export async function getJobWithImages(
  ctx: ServiceContext,
  jobId: string,
): Promise<{ job: JobItem; images: ImageItem[] } | null> {
  let job: JobItem | undefined;
  const images: ImageItem[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await ctx.clients.ddb.send(
      new QueryCommand({
        TableName: ctx.cfg.jobsTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': jobPk(jobId) },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of out.Items ?? []) {
      if (item.sk === 'JOB') job = item as JobItem;
      else if (typeof item.sk === 'string' && item.sk.startsWith('IMG#')) images.push(item as ImageItem);
    }
    start = out.LastEvaluatedKey;
  } while (start);
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
  await ctx.clients.ddb.send(
    new PutCommand({
      TableName: ctx.cfg.jobsTable,
      Item: job,
      ConditionExpression: 'attribute_not_exists(pk)',
    }),
  );
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

/** queued → running on the first image picked up; a no-op afterwards. */
export async function markJobRunning(ctx: ServiceContext, jobId: string): Promise<void> {
  // A failed condition means the transition already happened or no longer applies: nothing to do.
  await updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: 'JOB' },
    UpdateExpression: 'SET #s = :running, updatedAt = :now',
    ConditionExpression: '#s = :queued',
    ExpressionAttributeNames: { '#s': 'status' },
    ExpressionAttributeValues: {
      ':running': 'running',
      ':queued': 'queued',
      ':now': new Date(ctx.now()).toISOString(),
    },
  });
}

/** queued|processing → processing. False when the image is already terminal (a redelivered message). */
export async function markImageProcessing(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
): Promise<boolean> {
  const now = new Date(ctx.now()).toISOString();
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: imageSk(imageId) },
    UpdateExpression:
      'SET #s = :p, updatedAt = :now, startedAt = if_not_exists(startedAt, :now), progress = :zero',
    ConditionExpression: 'attribute_exists(pk) AND (#s = :q OR #s = :p)',
    ExpressionAttributeNames: { '#s': 'status' },
    ExpressionAttributeValues: { ':p': 'processing', ':q': 'queued', ':now': now, ':zero': 0 },
  });
}

export async function recordProgress(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  fraction: number,
  stage: string,
): Promise<void> {
  // A failed condition means the transition already happened or no longer applies: nothing to do.
  await updateIf(ctx, {
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

/** queued|processing → done. False when it was already terminal (duplicate S3 event). */
export async function markImageDone(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  fields: { resultKey: string; reportKey: string; contentType: string; report?: ImageReport },
): Promise<boolean> {
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: imageSk(imageId) },
    UpdateExpression:
      'SET #s = :done, progress = :one, stage = :st, resultKey = :rk, reportKey = :rpk, contentType = :ct, billed = :t, completedAt = :now, updatedAt = :now' +
      (fields.report ? ', report = :rep' : ''),
    ConditionExpression: 'attribute_exists(pk) AND (#s = :q OR #s = :p)',
    ExpressionAttributeNames: { '#s': 'status' },
    ExpressionAttributeValues: {
      ':done': 'done',
      ':one': 1,
      ':st': 'done',
      ':rk': fields.resultKey,
      ':rpk': fields.reportKey,
      ':ct': fields.contentType,
      ':t': true,
      ':now': new Date(ctx.now()).toISOString(),
      ':q': 'queued',
      ':p': 'processing',
      ...(fields.report ? { ':rep': fields.report } : {}),
    },
  });
}

export async function markImageFailed(
  ctx: ServiceContext,
  jobId: string,
  imageId: string,
  code: string,
  detail: string,
): Promise<boolean> {
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: imageSk(imageId) },
    UpdateExpression: 'SET #s = :f, #e = :e, billed = :no, completedAt = :now, updatedAt = :now',
    ConditionExpression: 'attribute_exists(pk) AND (#s = :q OR #s = :p)',
    ExpressionAttributeNames: { '#s': 'status', '#e': 'error' },
    ExpressionAttributeValues: {
      ':f': 'failed',
      ':e': { code, detail: detail.slice(0, 1000) },
      ':no': false,
      ':now': new Date(ctx.now()).toISOString(),
      ':q': 'queued',
      ':p': 'processing',
    },
  });
}

/** queued|running → completed|failed. Exactly one caller wins; only the winner enqueues the webhook. */
export async function finishJob(
  ctx: ServiceContext,
  job: JobItem,
  status: 'completed' | 'failed',
): Promise<boolean> {
  try {
    const now = new Date(ctx.now()).toISOString();
    await ctx.clients.ddb.send(
      new UpdateCommand({
        TableName: ctx.cfg.jobsTable,
        Key: { pk: jobPk(job.jobId), sk: 'JOB' },
        UpdateExpression: 'SET #s = :s, completedAt = :now, updatedAt = :now, webhookStatus = :ws',
        ConditionExpression: '#s = :q OR #s = :r',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: {
          ':s': status,
          ':now': now,
          ':ws': job.webhookUrl ? 'pending' : 'none',
          ':q': 'queued',
          ':r': 'running',
        },
      }),
    );
    return true;
  } catch (err) {
    if (isConditionalCheckFailed(err)) return false;
    throw err;
  }
}

export async function setWebhookState(
  ctx: ServiceContext,
  jobId: string,
  state: { status: 'enqueued' | 'delivered' | 'failed' | 'pending'; attempts?: number; lastError?: string },
  onlyFrom?: string[],
): Promise<boolean> {
  const names: Record<string, string> = { '#w': 'webhookStatus' };
  const values: Record<string, unknown> = { ':w': state.status, ':now': new Date(ctx.now()).toISOString() };
  let update = 'SET #w = :w, updatedAt = :now';
  if (state.attempts !== undefined) {
    update += ', webhookAttempts = :a';
    values[':a'] = state.attempts;
  }
  if (state.lastError !== undefined) {
    update += ', webhookLastError = :le';
    values[':le'] = state.lastError.slice(0, 300);
  }
  let cond = 'attribute_exists(pk)';
  if (onlyFrom?.length) {
    cond += ` AND (${onlyFrom.map((_, i) => `#w = :from${i}`).join(' OR ')})`;
    onlyFrom.forEach((s, i) => (values[`:from${i}`] = s));
  }
  return updateIf(ctx, {
    TableName: ctx.cfg.jobsTable,
    Key: { pk: jobPk(jobId), sk: 'JOB' },
    UpdateExpression: update,
    ConditionExpression: cond,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  });
}

/** Tombstone: the job stays (status deleted, short ttl) so in-flight workers and events see it and stop. */
export async function markJobDeleted(ctx: ServiceContext, jobId: string): Promise<void> {
  const now = ctx.now();
  await ctx.clients.ddb.send(
    new UpdateCommand({
      TableName: ctx.cfg.jobsTable,
      Key: { pk: jobPk(jobId), sk: 'JOB' },
      UpdateExpression: 'SET #s = :d, updatedAt = :now, #ttl = :ttl REMOVE gsi1pk, gsi1sk',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#s': 'status', '#ttl': 'ttl' },
      ExpressionAttributeValues: {
        ':d': 'deleted',
        ':now': new Date(now).toISOString(),
        ':ttl': Math.floor(now / 1000) + 86400,
      },
    }),
  );
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

/** Claim an idempotency key. Returns the existing item when the key was already used. */
export async function claimIdempotencyKey(
  ctx: ServiceContext,
  item: IdempotencyItem,
): Promise<IdempotencyItem | null> {
  try {
    await ctx.clients.ddb.send(
      new PutCommand({
        TableName: ctx.cfg.jobsTable,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
    return null;
  } catch (err) {
    if (!isConditionalCheckFailed(err)) throw err;
    const out = await ctx.clients.ddb.send(
      new GetCommand({
        TableName: ctx.cfg.jobsTable,
        Key: { pk: item.pk, sk: 'IDEM' },
        ConsistentRead: true,
      }),
    );
    const existing = out.Item as IdempotencyItem | undefined;
    // DynamoDB TTL deletes lazily: an expired key counts as free.
    if (!existing || existing.ttl * 1000 < ctx.now()) {
      await ctx.clients.ddb.send(new PutCommand({ TableName: ctx.cfg.jobsTable, Item: item }));
      return null;
    }
    return existing;
  }
}

export async function releaseIdempotencyKey(ctx: ServiceContext, pk: string): Promise<void> {
  await ctx.clients.ddb.send(new DeleteCommand({ TableName: ctx.cfg.jobsTable, Key: { pk, sk: 'IDEM' } }));
}
