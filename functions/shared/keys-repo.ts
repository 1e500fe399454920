/**
 * API keys and tenants. Keys are 256-bit random strings, so a plain SHA-256 is a sufficient one-way hash
 * (slow KDFs protect low-entropy passwords; they would only add latency to every request here).
 */
import { createHash, randomBytes } from 'node:crypto';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { decryptSecret, encryptSecret } from './secrets.js';
import type { ServiceContext } from './context.js';
import { isConditionalCheckFailed } from './aws.js';
import type { ApiKeyItem, TenantItem } from './records.js';
import { TENANT_RE, ulid } from './ids.js';

export const hashKey = (apiKey: string) => createHash('sha256').update(apiKey, 'utf8').digest('hex');

export const KEY_RE = /^fk_[a-z]+_[A-Za-z0-9_-]{43}$/;

export async function findApiKey(ctx: ServiceContext, apiKey: string): Promise<ApiKeyItem | null> {
  const out = await ctx.clients.ddb.send(
    new GetCommand({ TableName: ctx.cfg.keysTable, Key: { pk: `KEY#${hashKey(apiKey)}`, sk: 'KEY' } }),
  );
  const item = out.Item as ApiKeyItem | undefined;
  return item && !item.revoked ? item : null;
}

export async function getTenant(ctx: ServiceContext, tenant: string): Promise<TenantItem | null> {
  const out = await ctx.clients.ddb.send(
    new GetCommand({ TableName: ctx.cfg.keysTable, Key: { pk: `TENANT#${tenant}`, sk: 'TENANT' } }),
  );
  return (out.Item as TenantItem | undefined) ?? null;
}

const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/** The tenant's webhook signing secret in clear (webhooks function only: it alone may decrypt). */
export async function getWebhookSecret(ctx: ServiceContext, tenant: string): Promise<string | null> {
  const item = await getTenant(ctx, tenant);
  if (!item) return null;
  if (item.webhookSecretEnc) return decryptSecret(ctx, tenant, item.webhookSecretEnc);
  return item.webhookSecret ?? null;
}

/**
 * Create the tenant (with its encrypted webhook signing secret) if missing, then a new key. The plain key is
 * returned once; the webhook secret only when this call created the tenant (it is never re-printed: use
 * `rotateWebhookSecret` to get a new one).
 */
export async function createApiKey(
  ctx: ServiceContext,
  tenant: string,
  name = 'default',
): Promise<{ apiKey: string; keyId: string; webhookSecret?: string }> {
  if (!TENANT_RE.test(tenant)) throw new Error(`tenant id "${tenant}" must match ${TENANT_RE}`);
  const createdAt = new Date(ctx.now()).toISOString();
  const secret = newWebhookSecret();
  const tenantItem: TenantItem = {
    pk: `TENANT#${tenant}`,
    sk: 'TENANT',
    tenant,
    webhookSecretEnc: await encryptSecret(ctx, tenant, secret),
    createdAt,
  };
  let created = true;
  try {
    await ctx.clients.ddb.send(
      new PutCommand({
        TableName: ctx.cfg.keysTable,
        Item: tenantItem,
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  } catch (err) {
    if (!isConditionalCheckFailed(err)) throw err;
    created = false;
  }
  const apiKey = `fk_${ctx.cfg.local ? 'local' : 'live'}_${randomBytes(32).toString('base64url')}`;
  const keyId = `key_${ulid()}`;
  const item: ApiKeyItem = { pk: `KEY#${hashKey(apiKey)}`, sk: 'KEY', tenant, keyId, name, createdAt };
  await ctx.clients.ddb.send(
    new PutCommand({
      TableName: ctx.cfg.keysTable,
      Item: item,
      ConditionExpression: 'attribute_not_exists(pk)',
    }),
  );
  return { apiKey, keyId, ...(created ? { webhookSecret: secret } : {}) };
}

/** Replace a tenant's webhook signing secret; the new one is returned once. Deliveries sign with it at once. */
export async function rotateWebhookSecret(ctx: ServiceContext, tenant: string): Promise<string> {
  if (!TENANT_RE.test(tenant)) throw new Error(`tenant id "${tenant}" must match ${TENANT_RE}`);
  const secret = newWebhookSecret();
  try {
    await ctx.clients.ddb.send(
      new UpdateCommand({
        TableName: ctx.cfg.keysTable,
        Key: { pk: `TENANT#${tenant}`, sk: 'TENANT' },
        UpdateExpression: 'SET webhookSecretEnc = :e, rotatedAt = :now REMOVE webhookSecret',
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: {
          ':e': await encryptSecret(ctx, tenant, secret),
          ':now': new Date(ctx.now()).toISOString(),
        },
      }),
    );
  } catch (err) {
    if (isConditionalCheckFailed(err)) throw new Error(`tenant "${tenant}" does not exist`);
    throw err;
  }
  return secret;
}
