/**
 * Admission control, shared by every API instance through DynamoDB (an in-memory limit per Lambda instance
 * grows with the number of warm instances, so it cannot bound a tenant's GPU spend):
 *
 *  - **images in flight per tenant**: one counter item per tenant, `ADMIT#{tenant}` / `INFLIGHT`. A job's
 *    images are admitted with one conditional `ADD` (`n <= limit - k`), which DynamoDB applies atomically, so
 *    concurrent API instances can never push the count past the limit. Each image gives its slot back exactly
 *    once, when it becomes terminal: the callers release only after *their* conditional transition to
 *    done/failed succeeded (one winner per image), or when an erased job drops images that never will.
 *  - **job creations per tenant per minute**: a fixed-window counter item per minute, `ADMIT#{tenant}` /
 *    `RATE#{epochMinute}`, same conditional `ADD`, expired by TTL. We use plain conditional counters rather
 *    than `rate-limiter-flexible`'s DynamoDB store: that store needs its own table layout and adds a dependency
 *    for what is one UpdateItem here; a fixed window can admit up to twice the rate across a window boundary,
 *    which is acceptable for a brake on spend (the in-flight cap is the hard bound).
 *
 * Both live in the jobs table, which every function that creates or finishes images already writes.
 * Known gap: a crash between an image's terminal transition and its release leaves one slot taken; the counter
 * can be rebuilt from the tenant's non-terminal images (not automated yet).
 */
import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { ServiceContext } from './context.js';
import { isConditionalCheckFailed } from './aws.js';
import { assertTenant } from './ids.js';

const admitPk = (tenant: string) => {
  assertTenant(tenant);
  return `ADMIT#${tenant}`;
};
const INFLIGHT_SK = 'INFLIGHT';

export type Admission = { ok: true } | { ok: false; current: number; limit: number };

async function readCount(ctx: ServiceContext, pk: string, sk: string): Promise<number> {
  const out = await ctx.clients.ddb.send(
    new GetCommand({ TableName: ctx.cfg.jobsTable, Key: { pk, sk }, ConsistentRead: true }),
  );
  return Number(out.Item?.n ?? 0);
}

/** Conditionally add `k` to a counter that must stay ≤ `limit`; on refusal, the count that refused it. */
async function addWithin(
  ctx: ServiceContext,
  pk: string,
  sk: string,
  k: number,
  limit: number,
  ttl?: number,
): Promise<Admission> {
  if (k > limit) return { ok: false, current: await readCount(ctx, pk, sk), limit };
  try {
    await ctx.clients.ddb.send(
      new UpdateCommand({
        TableName: ctx.cfg.jobsTable,
        Key: { pk, sk },
        UpdateExpression: ttl === undefined ? 'ADD #n :k' : 'ADD #n :k SET #ttl = :ttl',
        ConditionExpression: 'attribute_not_exists(#n) OR #n <= :room',
        ExpressionAttributeNames: { '#n': 'n', ...(ttl === undefined ? {} : { '#ttl': 'ttl' }) },
        ExpressionAttributeValues: {
          ':k': k,
          ':room': limit - k,
          ...(ttl === undefined ? {} : { ':ttl': ttl }),
        },
      }),
    );
    return { ok: true };
  } catch (err) {
    if (!isConditionalCheckFailed(err)) throw err;
    return { ok: false, current: await readCount(ctx, pk, sk), limit };
  }
}

/** Take `images` in-flight slots for a tenant (all or none). */
export function acquireInFlight(ctx: ServiceContext, tenant: string, images: number): Promise<Admission> {
  return addWithin(ctx, admitPk(tenant), INFLIGHT_SK, images, ctx.cfg.limits.maxInFlightImages);
}

/**
 * Give back `images` slots. Call it only from a point that runs once per image: after this caller's own
 * conditional transition to a terminal state succeeded, or for images erased before they ever finish.
 * Never goes below zero (a duplicate release is absorbed and logged).
 */
export async function releaseInFlight(ctx: ServiceContext, tenant: string, images = 1): Promise<void> {
  if (images <= 0) return;
  try {
    await ctx.clients.ddb.send(
      new UpdateCommand({
        TableName: ctx.cfg.jobsTable,
        Key: { pk: admitPk(tenant), sk: INFLIGHT_SK },
        UpdateExpression: 'ADD #n :minus',
        ConditionExpression: '#n >= :k',
        ExpressionAttributeNames: { '#n': 'n' },
        ExpressionAttributeValues: { ':minus': -images, ':k': images },
      }),
    );
  } catch (err) {
    if (!isConditionalCheckFailed(err)) throw err;
    ctx.log.warn('in-flight counter already below the release; left at its value', { tenant, images });
  }
}

/** Images of a tenant currently counted in flight. */
export const inFlightImages = (ctx: ServiceContext, tenant: string) =>
  readCount(ctx, admitPk(tenant), INFLIGHT_SK);

/** Count one job creation in the tenant's current one-minute window. */
export async function takeJobCreation(
  ctx: ServiceContext,
  tenant: string,
): Promise<Admission & { retryAfter: number }> {
  const now = ctx.now();
  const minute = Math.floor(now / 60_000);
  const retryAfter = Math.max(1, Math.ceil(((minute + 1) * 60_000 - now) / 1000));
  const verdict = await addWithin(
    ctx,
    admitPk(tenant),
    `RATE#${minute}`,
    1,
    ctx.cfg.limits.jobsPerMinute,
    (minute + 2) * 60,
  );
  return { ...verdict, retryAfter };
}
