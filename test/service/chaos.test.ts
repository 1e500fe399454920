/**
 * The short chaos run (the full one is `npm run bench -- chaos`): faults of every kind at seeded random points,
 * then the books must balance.
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../chaos/harness.js';

describe('chaos (short)', () => {
  it('every job terminal, billed once or failed unbilled, one webhook each, no originals left', async () => {
    const books = await runChaos({
      seed: 7,
      jobs: 8,
      minFaults: 25,
      stackKillEveryMs: 5000,
      settleMs: 40_000,
    });
    expect(books.faults).toBeGreaterThanOrEqual(25);
    for (const k of ['worker-kill', 'stack-kill', 's3-event', 'webhook-enqueue'] as const)
      expect(books.faultsByKind[k], k).toBeGreaterThan(0);
    expect({
      lostJobs: books.lostJobs,
      doubleBills: books.doubleBills,
      failedButBilled: books.failedButBilled,
      doneButUnbilled: books.doneButUnbilled,
      lostWebhooks: books.lostWebhooks,
      duplicatedWebhooks: books.duplicatedWebhooks,
      leftoverOriginals: books.leftoverOriginals,
    }).toEqual({
      lostJobs: 0,
      doubleBills: 0,
      failedButBilled: 0,
      doneButUnbilled: 0,
      lostWebhooks: 0,
      duplicatedWebhooks: 0,
      leftoverOriginals: 0,
    });
    expect(books.jobs).toBeGreaterThanOrEqual(8);
  }, 90_000);
});
