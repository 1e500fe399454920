/**
 * Chaos run on the embedded stack (issue #12): submit jobs while injecting faults at random (seeded) points, then
 * stop injecting, let the system settle, and check the books.
 *
 * Faults:
 *  - worker-kill: the worker dies mid-image like SIGKILL (its message lapses back to the queue);
 *  - stack-kill: the whole local stack dies (emulators, handlers, worker, in-memory queues) and restarts on the
 *    same persistent data directory;
 *  - s3-event: an S3 ObjectCreated event never reaches the completion queue;
 *  - webhook-enqueue: a SendMessage to the webhooks queue fails;
 *  - handler-timeout: a DynamoDB call times out, so whichever handler made it (API, worker, completion, DLQ,
 *    webhooks, sweeper) stops at that point, like a Lambda killed at its timeout.
 * Every kind fires at least once: the first few eligible calls of each per-call kind are skipped by a seeded
 * count, then the next one fires for sure (later ones by probability), and each kill kind has a seeded first time;
 * the fault phase lasts until every kind fired (bounded by maxFaultPhaseMs).
 *
 * Books: every job terminal, one job per Idempotency-Key; every done image billed exactly once and every failed
 * image not billed; every finished job's webhook under exactly one webhook-id (never none, never two ids for one
 * job), each delivery's signature verifying; no originals left in the uploads bucket. Webhooks are at-least-once:
 * a sender that dies between the HTTP delivery and recording it makes the next one send the same webhook-id again
 * (receivers drop it by id, as Standard Webhooks says). Those redeliveries are counted apart from the ids, next to
 * the resends the service itself recorded (`webhookResends`, an attempt whose sender died mid-attempt).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { Webhook } from 'standardwebhooks';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';
import { startWorker, type RunningWorker } from '../../functions/worker/worker.js';
import type { ImageItem, JobItem, UsageItem } from '../../functions/shared/records.js';
import { SAMPLE, startReceiver } from '../service/helpers.js';
import { mulberry32 as rng } from '../../functions/pipeline/prng.js';

export interface ChaosOptions {
  seed: number;
  jobs: number;
  imagesPerJob: number;
  /** Keep injecting until at least this many faults fired (and every job was submitted). */
  minFaults: number;
  /** Stand-in steps per image and ms per step. */
  steps: number;
  stepMs: number;
  workerKillEveryMs: number;
  stackKillEveryMs: number;
  /** Per-call probabilities. */
  pS3Event: number;
  pWebhookEnqueue: number;
  pHandlerTimeout: number;
  /** Give up settling after this long. */
  settleMs: number;
  /** Stop injecting after this long even if not every kind of fault fired yet. */
  maxFaultPhaseMs: number;
  /**
   * Per-call kinds: the first firing comes after a seeded number of eligible calls below this (then surely);
   * kill kinds: the first one at a seeded time below the kind's interval.
   */
  firstWithin: Record<'s3-event' | 'webhook-enqueue' | 'handler-timeout', number>;
  log?: (line: string) => void;
}

export const CHAOS_DEFAULTS: ChaosOptions = {
  seed: 12,
  jobs: 40,
  imagesPerJob: 2,
  minFaults: 100,
  steps: 6,
  stepMs: 40,
  workerKillEveryMs: 2500,
  stackKillEveryMs: 8000,
  pS3Event: 0.3,
  pWebhookEnqueue: 0.4,
  pHandlerTimeout: 0.01,
  settleMs: 300_000,
  maxFaultPhaseMs: 900_000,
  firstWithin: { 's3-event': 3, 'webhook-enqueue': 2, 'handler-timeout': 200 },
};

export type FaultKind = 'worker-kill' | 'stack-kill' | 's3-event' | 'webhook-enqueue' | 'handler-timeout';

export interface ChaosBooks {
  seed: number;
  faults: number;
  faultsByKind: Record<FaultKind, number>;
  jobs: number;
  images: number;
  imagesDone: number;
  imagesFailed: number;
  lostJobs: number;
  /** Idempotency-Keys that produced more than one job. */
  duplicateJobs: number;
  doubleBills: number;
  failedButBilled: number;
  doneButUnbilled: number;
  webhooksExpected: number;
  /** Finished jobs with a webhook URL and no webhook-id received. */
  lostWebhooks: number;
  /** Finished jobs whose deliveries carried more than one webhook-id (one job event told twice). */
  duplicatedWebhooks: number;
  /** Deliveries whose signature does not verify with the tenant's secret, or whose id is not their job event's. */
  unverifiedWebhooks: number;
  /** HTTP deliveries of an id already received (at-least-once redeliveries; receivers de-duplicate by id). */
  webhookRedeliveries: number;
  /** Attempts the service itself sent again after their sender died mid-attempt (sum of webhookResends). */
  webhookResendsRecorded: number;
  /** Attempts after a failed one (timeouts, refusals: the endpoint may still have received the failed one). */
  webhookRetries: number;
  leftoverOriginals: number;
  settleMs: number;
  wallMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runChaos(partial: Partial<ChaosOptions> = {}): Promise<ChaosBooks> {
  const o = { ...CHAOS_DEFAULTS, ...partial };
  const log = o.log ?? (() => undefined);
  const random = rng(o.seed);
  const t0 = Date.now();
  const dir = await mkdtemp(join(tmpdir(), 'falco-chaos-'));
  const hook = await startReceiver();
  const faults: Record<FaultKind, number> = {
    'worker-kill': 0,
    'stack-kill': 0,
    's3-event': 0,
    'webhook-enqueue': 0,
    'handler-timeout': 0,
  };
  const total = () => Object.values(faults).reduce((a, b) => a + b, 0);
  // Eligible calls of each per-call kind still to let through before its first firing (seeded).
  const skipFirst = {
    's3-event': Math.floor(random() * o.firstWithin['s3-event']),
    'webhook-enqueue': Math.floor(random() * o.firstWithin['webhook-enqueue']),
    'handler-timeout': Math.floor(random() * o.firstWithin['handler-timeout']),
  };
  /** Whether this eligible call of `kind` fails: surely once its seeded skip count is used up, then by `p`. */
  const fire = (kind: keyof typeof skipFirst, p: number): boolean => {
    if (!armed) return false;
    const hit = faults[kind] === 0 ? skipFirst[kind]-- <= 0 : random() < p;
    if (hit) faults[kind]++;
    return hit;
  };
  let armed = true;
  const anonymizer = createStandInAnonymizer({ stepMs: o.stepMs });
  const closeable = { ...anonymizer, close: async () => undefined }; // shared across restarts

  const start = async (): Promise<LocalStack> => {
    const s = await startLocalStack({
      port: 0,
      webPage: false,
      dataDir: dir,
      sweepIntervalMs: 300,
      jobsVisibilityTimeout: 2,
      maxReceiveCount: 6,
      dropS3Event: () => fire('s3-event', o.pS3Event),
      env: {
        RECONCILE_AFTER_SECONDS: '2',
        OUTBOX_GRACE_SECONDS: '1',
        WEBHOOK_RETRY_BASE_SECONDS: '1',
        WEBHOOK_TIMEOUT_MS: '2000',
        IDEMPOTENCY_LOCK_SECONDS: '3',
        ORPHAN_INPUT_SECONDS: '5',
      },
    });
    s.ctx.clients.sqs.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as { QueueUrl?: string; MessageBody?: string };
        if (
          input.MessageBody &&
          input.QueueUrl === s.ctx.cfg.webhooksQueueUrl &&
          fire('webhook-enqueue', o.pWebhookEnqueue)
        ) {
          throw Object.assign(new Error('chaos: webhook enqueue failed'), { name: 'ServiceUnavailable' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'chaosSqs' },
    );
    s.ctx.clients.ddb.middlewareStack.add(
      (next) => async (args) => {
        if (fire('handler-timeout', o.pHandlerTimeout)) {
          throw Object.assign(new Error('chaos: handler timed out'), { name: 'TimeoutError' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'chaosDdb' },
    );
    return s;
  };
  const newWorker = (s: LocalStack) =>
    startWorker(s.ctx, closeable, {
      waitTimeSeconds: 1,
      visibilityTimeout: 2,
      heartbeatInterval: 1,
      shutdownGraceMs: 500,
    });

  let stack = await start();
  let worker: RunningWorker = newWorker(stack);
  let restarting: Promise<void> | null = null;

  // Submitting: each job with its own Idempotency-Key, retried until accepted (the API may hit injected faults
  // or a dead stack).
  const submitted: string[] = [];
  const submit = async (n: number) => {
    const key = `chaos-${o.seed}-${n}`;
    for (let attempt = 0; attempt < 200; attempt++) {
      await restarting;
      try {
        const form = new FormData();
        for (let i = 0; i < o.imagesPerJob; i++)
          form.append('image', new Blob([SAMPLE], { type: 'image/jpeg' }), `p${i}.jpg`);
        form.append('options', JSON.stringify({ steps: o.steps }));
        form.append('webhook', hook.url);
        const res = await fetch(`${stack.url}/v1/jobs`, {
          method: 'POST',
          body: form,
          headers: { authorization: `Bearer ${stack.apiKey}`, 'idempotency-key': key },
        });
        const body = (await res.json()) as { id?: string };
        if (res.status === 202 && body.id) {
          if (!submitted.includes(body.id)) submitted.push(body.id);
          return;
        }
      } catch {
        // stack down: retry
      }
      await sleep(100 + random() * 200);
    }
    throw new Error(`job ${n} was never accepted`);
  };

  const submitting = (async () => {
    for (let n = 0; n < o.jobs; n++) {
      await submit(n);
      await sleep(random() * 150);
    }
  })();

  // Scheduled kills at random points.
  let nextWorkerKill = Date.now() + random() * o.workerKillEveryMs;
  let nextStackKill = Date.now() + o.stackKillEveryMs * (0.25 + 0.75 * random());
  let submittedAll = false;
  void submitting.then(() => (submittedAll = true));
  // Until enough faults fired, each kind at least once (bounded: maxFaultPhaseMs).
  const tFaults = Date.now();
  const everyKind = () => Object.values(faults).every((n) => n > 0);
  while (
    !(submittedAll && total() >= o.minFaults && everyKind()) &&
    Date.now() - tFaults < o.maxFaultPhaseMs
  ) {
    await sleep(50);
    const now = Date.now();
    if (Math.random() < 0.01)
      log(`faults ${total()} ${JSON.stringify(faults)}, submitted ${submitted.length}`);
    // After the first kill of each kind, kills pause until every per-call kind fired: those need work to flow
    // (results written, jobs finishing), which back-to-back restarts on a slow machine would starve. Then kills go
    // on until enough faults fired.
    const killing =
      faults['worker-kill'] === 0 || faults['stack-kill'] === 0 || (everyKind() && total() < o.minFaults);
    if (!killing) continue;
    if (now >= nextStackKill) {
      nextStackKill = now + o.stackKillEveryMs * (0.5 + random());
      faults['stack-kill']++;
      log(`stack-kill #${faults['stack-kill']} (faults so far ${total()})`);
      let done!: () => void;
      restarting = new Promise((r) => (done = r));
      await worker.crash();
      await stack.kill();
      await sleep(random() * 300);
      stack = await start();
      worker = newWorker(stack);
      done();
      restarting = null;
    } else if (now >= nextWorkerKill) {
      nextWorkerKill = now + o.workerKillEveryMs * (0.5 + random());
      faults['worker-kill']++;
      await worker.crash();
      await sleep(random() * 200);
      worker = newWorker(stack);
    }
  }
  await submitting;
  armed = false;
  log(`faults stopped: ${total()}; settling`);

  // Settle: every job terminal and every finished job's webhook delivered (or the deadline).
  const tSettle = Date.now();
  const scan = async <T>(table: string): Promise<T[]> => {
    const out: T[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const r = await stack.ctx.clients.ddb.send(
        new ScanCommand({ TableName: table, ExclusiveStartKey: startKey, ConsistentRead: true }),
      );
      out.push(...((r.Items ?? []) as T[]));
      startKey = r.LastEvaluatedKey;
    } while (startKey);
    return out;
  };
  // Deliveries by job (from the signed body, not the header): the distinct webhook-ids and the raw count.
  const secret = stack.webhookSecret;
  const received = () => {
    const byJob = new Map<string, { ids: Set<string>; deliveries: number }>();
    let unverified = 0;
    for (const r of hook.received) {
      let jobId: string;
      try {
        // The signature over (id, the delivery's own timestamp, body): Webhook.verify would also refuse deliveries
        // older than its 5-minute replay window, and a long run's first ones are.
        const id = r.headers['webhook-id']!;
        const at = new Date(Number(r.headers['webhook-timestamp']) * 1000);
        const expected = new Webhook(secret).sign(id, at, r.body);
        if (!(r.headers['webhook-signature'] ?? '').split(' ').includes(expected))
          throw new Error('signature does not verify');
        jobId = (JSON.parse(r.body) as { data: { id: string } }).data.id;
      } catch {
        unverified++;
        continue;
      }
      // Signed, but under an id that is not its job event's: counted, and still grouped (a second id is a duplicate).
      if (r.headers['webhook-id'] !== `msg_${jobId}`) unverified++;
      const e = byJob.get(jobId) ?? { ids: new Set<string>(), deliveries: 0 };
      e.ids.add(r.headers['webhook-id']!);
      e.deliveries++;
      byJob.set(jobId, e);
    }
    return { byJob, unverified };
  };
  for (;;) {
    const items = await scan<JobItem | ImageItem>(stack.ctx.cfg.jobsTable);
    const jobs = items.filter((i): i is JobItem => i.sk === 'JOB' && i.status !== 'deleted');
    const open = jobs.filter((j) => j.status === 'queued' || j.status === 'running');
    const got = received().byJob;
    const waiting = jobs.filter((j) => j.webhookUrl && !got.has(j.jobId));
    if ((open.length === 0 && waiting.length === 0) || Date.now() - tSettle > o.settleMs) break;
    if (Math.random() < 0.1)
      log(
        `settling: ${open.length} open jobs, ${waiting.length} webhooks waiting, ${Date.now() - tSettle} ms`,
      );
    await sleep(500);
  }
  await sleep(2500); // time for any duplicate to show up
  const settleMs = Date.now() - tSettle;

  // The books.
  const items = await scan<JobItem | ImageItem>(stack.ctx.cfg.jobsTable);
  const jobs = items.filter((i): i is JobItem => i.sk === 'JOB' && i.status !== 'deleted');
  // Image items of a request that died before writing its job are invisible (TTL removes them): not counted.
  const jobIds = new Set(jobs.map((j) => j.jobId));
  const images = items.filter((i): i is ImageItem => String(i.sk).startsWith('IMG#') && jobIds.has(i.jobId));
  const usage = await scan<UsageItem>(stack.ctx.cfg.usageTable);
  const bills = new Map<string, number>();
  for (const u of usage)
    bills.set(`${u.jobId}/${u.imageId}`, (bills.get(`${u.jobId}/${u.imageId}`) ?? 0) + 1);
  const { byJob: got, unverified } = received();
  const perKey = new Map<string, number>();
  for (const j of jobs)
    if (j.idempotencyKeyHash) perKey.set(j.idempotencyKeyHash, (perKey.get(j.idempotencyKeyHash) ?? 0) + 1);
  const originals = await stack.ctx.clients.s3.send(
    new ListObjectsV2Command({ Bucket: stack.ctx.cfg.uploadsBucket, Prefix: 'inputs/' }),
  );
  const finished = jobs.filter((j) => j.status === 'completed' || j.status === 'failed');
  const books: ChaosBooks = {
    seed: o.seed,
    faults: total(),
    faultsByKind: faults,
    jobs: jobs.length,
    images: images.length,
    imagesDone: images.filter((i) => i.status === 'done').length,
    imagesFailed: images.filter((i) => i.status === 'failed').length,
    lostJobs: jobs.length - finished.length + Math.max(0, o.jobs - jobs.length),
    duplicateJobs: [...perKey.values()].filter((n) => n > 1).length,
    doubleBills: [...bills.values()].filter((n) => n > 1).length,
    failedButBilled: images.filter((i) => i.status === 'failed' && bills.has(`${i.jobId}/${i.imageId}`))
      .length,
    doneButUnbilled: images.filter((i) => i.status === 'done' && !bills.has(`${i.jobId}/${i.imageId}`))
      .length,
    webhooksExpected: finished.filter((j) => j.webhookUrl).length,
    lostWebhooks: finished.filter((j) => j.webhookUrl && !got.has(j.jobId)).length,
    duplicatedWebhooks: [...got.values()].filter((e) => e.ids.size > 1).length,
    unverifiedWebhooks: unverified,
    webhookRedeliveries: [...got.values()].reduce((n, e) => n + e.deliveries - e.ids.size, 0),
    webhookResendsRecorded: jobs.reduce((n, j) => n + (j.webhookResends ?? 0), 0),
    webhookRetries: jobs.reduce((n, j) => n + Math.max(0, (j.webhookAttempts ?? 1) - 1), 0),
    leftoverOriginals: originals.KeyCount ?? 0,
    settleMs,
    wallMs: Date.now() - t0,
  };
  await worker.stop();
  await stack.stop();
  await hook.close();
  await rm(dir, { recursive: true, force: true });
  return books;
}
