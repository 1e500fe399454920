/** `cli keys create` issues a key the API accepts, scoped to its tenant, through the real repository code. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueKey, rotateSecret } from '../../functions/cli/keys.js';
import { getTenant, getWebhookSecret } from '../../functions/shared/keys-repo.js';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';

let stack: LocalStack;
beforeAll(async () => {
  stack = await startLocalStack({ port: 0, webPage: false });
});
afterAll(async () => {
  await stack?.stop();
});

describe('cli keys create', () => {
  it('creates a working key for a new tenant, and refuses a bad tenant id', async () => {
    const env = { ...process.env, ...stack.env };
    const r = await issueKey('acme-corp', 'ops', env);
    expect(r.apiKey).toMatch(/^fk_/);
    expect(r.webhookSecret).toMatch(/^whsec_/);
    const ok = await fetch(`${stack.url}/v1/usage`, { headers: { Authorization: `Bearer ${r.apiKey}` } });
    expect(ok.status).toBe(200);
    const bad = await fetch(`${stack.url}/v1/usage`, { headers: { Authorization: `Bearer ${r.apiKey}x` } });
    expect(bad.status).toBe(401);
    await expect(issueKey('no spaces!', 'x', env)).rejects.toThrow(/tenant id/);
    const { KEYS_TABLE: _k, ...noTable } = env;
    await expect(issueKey('acme', 'x', { ...noTable, FALCO_LOCAL_DIR: '/nonexistent' })).rejects.toThrow(
      /KEYS_TABLE is not set/,
    );
  });

  it('stores the webhook secret envelope-encrypted, never re-prints it, and rotates it (shown once)', async () => {
    const env = { ...process.env, ...stack.env };
    const first = await issueKey('rotating', 'a', env);
    const secret = first.webhookSecret!;
    expect(secret).toMatch(/^whsec_/);
    // At rest: ciphertext only, no plain attribute, nothing of the secret in the item.
    const item = (await getTenant(stack.ctx, 'rotating'))!;
    expect(item.webhookSecret).toBeUndefined();
    expect(item.webhookSecretEnc).toMatchObject({ v: 1, kek: 'local' });
    expect(JSON.stringify(item)).not.toContain(secret.slice(6, 20));
    expect(await getWebhookSecret(stack.ctx, 'rotating')).toBe(secret);
    // Bound to its tenant: the same ciphertext under another tenant's name does not decrypt.
    const { decryptSecret } = await import('../../functions/shared/secrets.js');
    await expect(decryptSecret(stack.ctx, 'other', item.webhookSecretEnc)).rejects.toThrow();
    // A second key for the tenant does not show the secret again.
    expect((await issueKey('rotating', 'b', env)).webhookSecret).toBeUndefined();
    const rotated = await rotateSecret('rotating', env);
    expect(rotated).toMatch(/^whsec_/);
    expect(rotated).not.toBe(secret);
    expect(await getWebhookSecret(stack.ctx, 'rotating')).toBe(rotated);
    await expect(rotateSecret('nobody-here', env)).rejects.toThrow(/does not exist/);
    // Outside local mode, no KMS key configured: refuse rather than store a secret in clear.
    const { STAGE: _s, ...prod } = env;
    await expect(issueKey('prod-tenant', 'x', { ...prod, STAGE: 'prod' })).rejects.toThrow(
      /SECRETS_KEY_ID is not set/,
    );
  });
});
