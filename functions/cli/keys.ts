/**
 * `npm run cli -- keys create --tenant <id> [--name <label>]`: issue an API key for a tenant on a deployed
 * stack (or any stack whose tables the environment points at). Writes the same items the API reads —
 * the key's SHA-256, the tenant and its webhook secret — through the service's own repository code.
 *
 * Needs KEYS_TABLE (stack output `KeysTableName`) and AWS credentials/region in the environment. The key
 * and the webhook secret are printed once and never stored in clear.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { createContext } from '../shared/context.js';
import { createApiKey, rotateWebhookSecret } from '../shared/keys-repo.js';
import { CliError } from './errors.js';

/**
 * The environment of a running `npm start` (it writes var/local/stack.json while it runs), so that
 * `keys create` with no KEYS_TABLE set works against the local stack without hand-set endpoints.
 */
export function localStackEnv(dir = process.env.FALCO_LOCAL_DIR ?? join(process.cwd(), 'var', 'local')) {
  try {
    const s = JSON.parse(readFileSync(join(dir, 'stack.json'), 'utf8')) as { env: Record<string, string> };
    return s.env;
  } catch {
    return null;
  }
}

function keysContext(env: NodeJS.ProcessEnv) {
  if (!env.KEYS_TABLE) {
    const local = localStackEnv(env.FALCO_LOCAL_DIR ?? join(process.cwd(), 'var', 'local'));
    if (!local)
      throw new CliError(
        'missing-config',
        'KEYS_TABLE is not set (the stack output KeysTableName), and no local stack is running (npm start)',
      );
    // The SDK reads AWS_ENDPOINT_URL_* from the process environment itself.
    Object.assign(process.env, local);
    env = { ...env, ...local };
  }
  const unused = 'unused-by-keys-command';
  return createContext('cli-keys', {
    UPLOADS_BUCKET: unused,
    RESULTS_BUCKET: unused,
    JOBS_TABLE: unused,
    USAGE_TABLE: unused,
    JOBS_QUEUE_URL: unused,
    WEBHOOKS_QUEUE_URL: unused,
    ...env,
  });
}

/**
 * Issue a key; only KEYS_TABLE (and SECRETS_KEY_ID, the KMS key that encrypts webhook secrets) matter, the
 * service's other resources are not touched by this command.
 */
export async function issueKey(tenant: string, name: string, env: NodeJS.ProcessEnv = process.env) {
  return createApiKey(keysContext(env), tenant, name);
}

/** A new webhook signing secret for the tenant (the old one stops verifying at once); shown once. */
export async function rotateSecret(tenant: string, env: NodeJS.ProcessEnv = process.env) {
  return rotateWebhookSecret(keysContext(env), tenant);
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('API keys of a deployed stack');
  keys
    .command('create')
    .description(
      'create a tenant (if new) and an API key for it; prints the key once, and the webhook secret once when the tenant is new',
    )
    .requiredOption('--tenant <id>', 'tenant id (letters, digits, - and _)')
    .option('--name <label>', 'a label for the key', 'default')
    .action(async (o: { tenant: string; name: string }) => {
      const r = await issueKey(o.tenant, o.name);
      process.stdout.write(
        JSON.stringify(
          { tenant: o.tenant, apiKey: r.apiKey, keyId: r.keyId, webhookSecret: r.webhookSecret },
          null,
          2,
        ) + '\n',
      );
    });
  keys
    .command('rotate-secret')
    .description(
      "replace a tenant's webhook signing secret; prints the new secret once (needs SECRETS_KEY_ID)",
    )
    .requiredOption('--tenant <id>', 'tenant id')
    .action(async (o: { tenant: string }) => {
      const webhookSecret = await rotateSecret(o.tenant);
      process.stdout.write(JSON.stringify({ tenant: o.tenant, webhookSecret }, null, 2) + '\n');
    });
}
