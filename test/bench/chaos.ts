/**
 * `npm run bench -- chaos [--seed N] [--faults N] [--jobs N]`: the chaos run of test/chaos/harness.ts with its
 * defaults (≥ 100 faults), printing the books as one JSON line. Exit code 1 if the books do not balance.
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
    books.doubleBills +
    books.failedButBilled +
    books.doneButUnbilled +
    books.lostWebhooks +
    books.duplicatedWebhooks +
    books.leftoverOriginals;
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
