/** `cli keys create` issues a key the API accepts, scoped to its tenant, through the real repository code. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueKey } from '../../functions/cli/keys.js';
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
});
