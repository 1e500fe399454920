/**
 * `npm run bench -- chaos [--seed N] [--faults N] [--jobs N]`: the chaos run of test/chaos/harness.ts with its
 * defaults (≥ 100 faults, every kind at least once), printing the books as one JSON line. Exit code 1 if the books do
 * not balance. `webhookRedeliveries` (the same webhook-id delivered again: at-least-once, receivers de-duplicate)
 * is reported, not failed, as long as each one is a send the service recorded (a resend or a retry).
 */
import { runChaos } from '../chaos/harness.js';

export default async function chaos(args: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : undefined;
  };
  process.env.LOG_LEVEL ??= 'CRITICAL';
  const books = await runChaos({
    ...(arg('seed') !== undefined ? { seed: arg('seed') } : {}),
    ...(arg('faults') !== undefined ? { minFaults: arg('faults') } : {}),
    ...(arg('jobs') !== undefined ? { jobs: arg('jobs') } : {}),
    log: (l) => process.stderr.write(`chaos: ${l}\n`),
  });
  const bad =
    books.lostJobs +
    books.duplicateJobs +
    books.doubleBills +
    books.failedButBilled +
    books.doneButUnbilled +
    books.lostWebhooks +
    books.duplicatedWebhooks +
    books.unverifiedWebhooks +
    books.leftoverOriginals +
    // Every HTTP redelivery must be a send the service recorded: a resend (its sender died mid-attempt) or a retry.
    Math.max(0, books.webhookRedeliveries - books.webhookResendsRecorded - books.webhookRetries);
  console.log(
    JSON.stringify({
      bench: 'chaos',
      ok: bad === 0,
      ...books,
      load1: (await import('node:os')).loadavg()[0],
    }),
  );
  if (bad) process.exitCode = 1;
}
