/**
 * Metering. The per-image usage item IS the meter: it is written with attribute_not_exists, so however many
 * times completion runs for an image, at most one item exists; the monthly figure is a COUNT query over them.
 *
 * Why no separate counter: "put then increment" is not atomic without TransactWriteItems, and a crash between
 * the two would under-bill (or over-bill on retry). Transactions would fix that on AWS but the local emulator
 * (dynalite) has no TransactWriteItems, and the contract is one code path. Counting small items is exact and
 * cheap at our scale (~1 RCU per 4 KB, i.e. per ~40 images); a pre-aggregated counter can later be fed from
 * DynamoDB Streams without touching this path.
 */
import { PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { ServiceContext } from './context.js';
import { isConditionalCheckFailed } from './aws.js';
import { usagePk, usageSk, type UsageItem } from './records.js';

/** True when this call created the record (i.e. this is the one charge for the image). */
export async function recordUsage(
  ctx: ServiceContext,
  tenant: string,
  month: string,
  jobId: string,
  imageId: string,
): Promise<boolean> {
  const item: UsageItem = {
    pk: usagePk(tenant, month),
    sk: usageSk(jobId, imageId),
    tenant,
    jobId,
    imageId,
    month,
    billedAt: new Date(ctx.now()).toISOString(),
  };
  try {
    await ctx.clients.ddb.send(
      new PutCommand({
        TableName: ctx.cfg.usageTable,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
    return true;
  } catch (err) {
    if (isConditionalCheckFailed(err)) return false;
    throw err;
  }
}

export async function countUsage(ctx: ServiceContext, tenant: string, month: string): Promise<number> {
  let count = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const out = await ctx.clients.ddb.send(
      new QueryCommand({
        TableName: ctx.cfg.usageTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': usagePk(tenant, month) },
        Select: 'COUNT',
        ExclusiveStartKey: start,
      }),
    );
    count += out.Count ?? 0;
    start = out.LastEvaluatedKey;
  } while (start);
  return count;
}

export async function listUsage(ctx: ServiceContext, tenant: string, month: string): Promise<UsageItem[]> {
  const items: UsageItem[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await ctx.clients.ddb.send(
      new QueryCommand({
        TableName: ctx.cfg.usageTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': usagePk(tenant, month) },
        ExclusiveStartKey: start,
      }),
    );
    items.push(...((out.Items ?? []) as UsageItem[]));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}
