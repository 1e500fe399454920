/**
 * The short chaos run (the full one is `npm run bench -- chaos`): all five fault kinds, each at least once (the
 * harness's seeded schedule guarantees it), at seeded random points; then the books must balance.
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../chaos/harness.js';

describe('chaos (short)', () => {
  it('every job terminal, billed once or failed unbilled, one webhook-id each, no originals left', async () => {
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
      ...(process.env.CHAOS_LOG ? { log: (l: string) => process.stderr.write(`chaos: ${l}\n`) } : {}),
    });
    // Every kind fired: the schedule forces each one's first firing, so this holds on a loaded machine too.
    expect(books.faultsByKind).toEqual({
      'worker-kill': expect.any(Number),
      'stack-kill': expect.any(Number),
      's3-event': expect.any(Number),
      'webhook-enqueue': expect.any(Number),
      'handler-timeout': expect.any(Number),
    });
    for (const [kind, n] of Object.entries(books.faultsByKind))
      expect(`${kind}: ${n > 0}`).toBe(`${kind}: true`);
    expect(books.faults).toBeGreaterThanOrEqual(12);
    expect(books.jobs).toBe(5);
    expect({
      lostJobs: books.lostJobs,
      duplicateJobs: books.duplicateJobs,
      doubleBills: books.doubleBills,
      failedButBilled: books.failedButBilled,
      doneButUnbilled: books.doneButUnbilled,
      lostWebhooks: books.lostWebhooks,
      duplicatedWebhooks: books.duplicatedWebhooks,
      unverifiedWebhooks: books.unverifiedWebhooks,
      leftoverOriginals: books.leftoverOriginals,
    }).toEqual({
      lostJobs: 0,
      duplicateJobs: 0,
      doubleBills: 0,
      failedButBilled: 0,
      doneButUnbilled: 0,
      lostWebhooks: 0,
      duplicatedWebhooks: 0,
      unverifiedWebhooks: 0,
      leftoverOriginals: 0,
    });
    // Exactly one webhook-id per finished job (above). Deliveries are at-least-once: a sender that dies between
    // the HTTP delivery and recording it makes the next one deliver the same id again, which receivers drop by id.
    // Such redeliveries are allowed, but each must be a send the service recorded (a resend after a sender died
    // mid-attempt, or a retry after a failed attempt): none may come from nowhere.
    expect(books.webhookRedeliveries).toBeLessThanOrEqual(
      books.webhookResendsRecorded + books.webhookRetries,
    );
    expect(books.webhooksExpected).toBe(5);
  }, 150_000);
});
