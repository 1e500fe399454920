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
      jobs: 5,
      minFaults: 12,
      workerKillEveryMs: 3000,
      stackKillEveryMs: 6000,
      pS3Event: 0.5,
      pWebhookEnqueue: 0.5,
      maxFaultPhaseMs: 60_000,
      settleMs: 60_000,
    });
    expect({
      lostJobs: books.lostJobs,
      doubleBills: books.doubleBills,
      failedButBilled: books.failedButBilled,
      doneButUnbilled: books.doneButUnbilled,
      lostWebhooks: books.lostWebhooks,
      leftoverOriginals: books.leftoverOriginals,
    }).toEqual({
      lostJobs: 0,
      doubleBills: 0,
      failedButBilled: 0,
      doneButUnbilled: 0,
      lostWebhooks: 0,
      leftoverOriginals: 0,
    });
    // Webhooks are at-least-once with a stable webhook-id: a whole-stack kill between the HTTP delivery and the
    // 'delivered' write makes one redelivery unavoidable (receivers de-duplicate by id). The short run allows
    // that one; the bench (npm run bench -- chaos) still demands 0 and reports the count.
    expect(books.duplicatedWebhooks).toBeLessThanOrEqual(1);
    expect(books.jobs).toBeGreaterThanOrEqual(5);
    expect(books.faults).toBeGreaterThanOrEqual(12);
    // Kills always happen; the per-event faults need jobs finishing during the fault phase, which a loaded
    // machine may not give in 60 s: require most kinds here (the bench requires all of them).
    expect(Object.values(books.faultsByKind).filter((n) => n > 0).length).toBeGreaterThanOrEqual(3);
  }, 150_000);
});
