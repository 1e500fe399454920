/**
 * Fault tolerance (issue #12) on the embedded stack: the declared state machines enforced by the database,
 * idempotency races, lost S3 events and lost webhook enqueues recovered by the sweeper, and a restart of a
 * persistent stack mid-job.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutCommand, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { newJobId } from '../../functions/shared/ids.js';
import { makeSweepHandler } from '../../functions/sweeper/handler.js';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';
import { transition, listJobs, getImage, getJob } from '../../functions/shared/jobs-repo.js';
import { processWebhookMessage } from '../../functions/webhooks/handler.js';
import { deliver } from '../../functions/webhooks/deliver.js';
import { IMAGE, JOB, WEBHOOK, isLegal, legalSources, type Machine } from '../../functions/shared/states.js';
import { listUsage } from '../../functions/shared/usage-repo.js';
import { jobPk, imageSk } from '../../functions/shared/records.js';
import { api, listKeys, SAMPLE, startReceiver, waitFor, type Receiver } from './helpers.js';

let stack: LocalStack;
let hook: Receiver;
let dropEvents = false;
let failWebhookSends = 0;
/** A request "dies" at these writes: updates/deletes of this idempotency key, and the job item's put. */
let killKeyWrites: string | undefined;
let killJobPut = false;
/** The request hangs for good (a Lambda frozen at its timeout) when it sends its image messages. */
let hangJobEnqueue = false;

beforeAll(async () => {
  stack = await startLocalStack({
    port: 0,
    webPage: false,
    anonymizer: createStandInAnonymizer({ stepMs: 20 }),
    worker: { visibilityTimeout: 5, heartbeatInterval: 1 },
    sweepIntervalMs: 0, // the tests run the sweeper themselves
    dropS3Event: () => dropEvents,
    env: { RECONCILE_AFTER_SECONDS: '1', OUTBOX_GRACE_SECONDS: '0', WEBHOOK_RETRY_BASE_SECONDS: '1' },
  });
  // Fault injection: SendMessage to the webhooks queue fails while the counter is positive.
  stack.ctx.clients.sqs.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as { QueueUrl?: string; MessageBody?: string };
      if (hangJobEnqueue && input.QueueUrl === stack.ctx.cfg.jobsQueueUrl && 'Entries' in args.input)
        return new Promise<never>(() => undefined);
      if (failWebhookSends > 0 && input.QueueUrl === stack.ctx.cfg.webhooksQueueUrl && input.MessageBody) {
        failWebhookSends--;
        throw Object.assign(new Error('injected: webhook enqueue failed'), { name: 'ServiceUnavailable' });
      }
      return next(args);
    },
    { step: 'initialize', name: 'faultInjection' },
  );
  stack.ctx.clients.ddb.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as {
        Key?: { pk?: unknown };
        Item?: { sk?: unknown };
        UpdateExpression?: string;
      };
      const dies =
        (killKeyWrites !== undefined && input.Key?.pk === killKeyWrites) ||
        (killJobPut && input.Item?.sk === 'JOB');
      if (dies) throw Object.assign(new Error('injected: the request died here'), { name: 'TimeoutError' });
      return next(args);
    },
    { step: 'initialize', name: 'requestDeath' },
  );
  hook = await startReceiver();
});

afterAll(async () => {
  await hook?.close();
  await stack?.stop();
});

const month = () => new Date().toISOString().slice(0, 7);

/** A one-image job whose webhook enqueue fails once, run to completion; returns its id. */
async function completedJobWithFailedWebhookEnqueue(): Promise<string> {
  failWebhookSends = 1;
  const res = await api(stack).postImages([{ bytes: SAMPLE }], {
    options: { steps: 1 },
    webhook: hook.url,
  });
  const jobId = res.data.id as string;
  await waitFor(
    'job completed',
    async () => (await api(stack).call('GET', `/v1/jobs/${jobId}`)).data.status === 'completed',
  );
  return jobId;
}

describe('state machines', () => {
  const machines: Array<Machine<string>> = [JOB, IMAGE, WEBHOOK] as never;

  it('declare edges only between their own states, and refuse undeclared narrowing', () => {
    for (const m of machines) {
      for (const e of m.edges) {
        expect(m.states).toContain(e.from);
        expect(m.states).toContain(e.to);
      }
      // No edge leaves a terminal state, except that an erased job can come from any finished one.
      for (const t of m.terminal)
        for (const e of m.edges.filter((x) => x.from === t)) expect(`${m.name}:${e.to}`).toBe('job:deleted');
    }
    expect(() => legalSources(IMAGE, 'processing', ['done'])).toThrow(
      /no declared edge from done to processing/,
    );
    expect(() => legalSources(WEBHOOK, 'pending')).toThrow(/no declared edge to pending/);
  });

  it('walks every edge and refuses every illegal pair in DynamoDB (the conditional write is the guard)', async () => {
    let n = 0;
    const seen: string[] = [];
    for (const m of machines) {
      for (const from of m.states) {
        for (const to of m.states) {
          const jobId = `job_sm${String(n++).padStart(4, '0')}`;
          const imageId = m === IMAGE ? 'img_sm' : undefined;
          await stack.ctx.clients.ddb.send(
            new PutCommand({
              TableName: stack.ctx.cfg.jobsTable,
              Item: { pk: jobPk(jobId), sk: imageId ? imageSk(imageId) : 'JOB', [m.attribute]: from },
            }),
          );
          let applied: boolean;
          try {
            applied = await transition(stack.ctx, m, { key: { jobId, imageId }, to });
          } catch {
            applied = false; // no edge leads to `to` at all
          }
          const got = await stack.ctx.clients.ddb.send(
            new GetCommand({
              TableName: stack.ctx.cfg.jobsTable,
              Key: { pk: jobPk(jobId), sk: imageId ? imageSk(imageId) : 'JOB' },
            }),
          );
          expect(`${m.name} ${from}→${to}: ${applied}`).toBe(
            `${m.name} ${from}→${to}: ${isLegal(m, from, to)}`,
          );
          expect(got.Item?.[m.attribute]).toBe(applied ? to : from);
          if (applied) seen.push(`${m.name}:${from}→${to}`);
        }
      }
    }
    expect(seen).toHaveLength(machines.reduce((k, m) => k + m.edges.length, 0));
    // A missing record is never created by a transition.
    expect(await transition(stack.ctx, JOB, { key: { jobId: 'job_nothere' }, to: 'running' })).toBe(false);
  });
});

describe('idempotency races', () => {
  const post = (key: string) =>
    api(stack).postImages([{ bytes: SAMPLE }], {
      headers: { 'Idempotency-Key': key },
      options: { steps: 1 },
    });
  const idemPk = async (key: string) => {
    const { createHash } = await import('node:crypto');
    return `IDEM#demo#${createHash('sha256').update(key).digest('hex')}`;
  };
  const jobsOf = async () => (await listJobs(stack.ctx, 'demo', 100)).jobs.map((j) => j.jobId);
  const expireLock = (pk: string) =>
    stack.ctx.clients.ddb.send(
      new UpdateCommand({
        TableName: stack.ctx.cfg.jobsTable,
        Key: { pk, sk: 'IDEM' },
        UpdateExpression: 'SET lockUntil = :past',
        ExpressionAttributeValues: { ':past': Math.floor(Date.now() / 1000) - 1 },
      }),
    );

  it('concurrent requests against an expired key create one job', async () => {
    const key = 'race-expired';
    const nowS = Math.floor(Date.now() / 1000);
    await stack.ctx.clients.ddb.send(
      new PutCommand({
        TableName: stack.ctx.cfg.jobsTable,
        Item: {
          pk: await idemPk(key),
          sk: 'IDEM',
          tenant: 'demo',
          bodyHash: 'old',
          jobId: 'job_old',
          state: 'done',
          ttl: nowS - 10,
        },
      }),
    );
    const before = new Set(await jobsOf());
    const res = await Promise.all(Array.from({ length: 6 }, () => post(key)));
    const created = (await jobsOf()).filter((j) => !before.has(j));
    expect(created).toHaveLength(1);
    // Everyone else was told to retry (in progress) or got the same job back.
    for (const r of res) {
      expect([202, 409]).toContain(r.status);
      if (r.status === 202) expect(r.data.id).toBe(created[0]);
      else expect(r.data.code ?? r.data.type).toMatch(/idempotency-in-progress/);
    }
  });

  it("a crashed request's key is held until its lock expires, then reusable", async () => {
    const key = 'race-crashed';
    const nowS = Math.floor(Date.now() / 1000);
    // A request that recorded its job id in the key, then died before writing any of its job.
    const deadJobId = newJobId();
    const item = {
      pk: await idemPk(key),
      sk: 'IDEM',
      tenant: 'demo',
      jobId: deadJobId,
      state: 'in-progress',
      ttl: nowS + 3600,
    };
    const first = await post(key); // learn the body hash the API computes for this body
    expect(first.status).toBe(202);
    const got = await stack.ctx.clients.ddb.send(
      new GetCommand({ TableName: stack.ctx.cfg.jobsTable, Key: { pk: item.pk, sk: 'IDEM' } }),
    );
    const bodyHash = got.Item!.bodyHash as string;
    await stack.ctx.clients.ddb.send(
      new PutCommand({
        TableName: stack.ctx.cfg.jobsTable,
        Item: { ...item, bodyHash, lockUntil: nowS + 600 },
      }),
    );
    const held = await post(key);
    expect(held.status).toBe(409);
    expect(held.data.code ?? held.data.type).toMatch(/idempotency-in-progress/);
    await stack.ctx.clients.ddb.send(
      new PutCommand({
        TableName: stack.ctx.cfg.jobsTable,
        Item: { ...item, bodyHash, lockUntil: nowS - 1 },
      }),
    );
    const retried = await post(key);
    expect(retried.status).toBe(202);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    // The retry creates the job the dead request would have: the id recorded in the key.
    expect(retried.data.id).toBe(deadJobId);
    expect((await post(key)).data.id).toBe(deadJobId);
  });

  it('a request that dies between writing its job and completing its key: the retry answers with that job', async () => {
    const key = 'die-after-job';
    const pk = await idemPk(key);
    const before = new Set(await jobsOf());
    // The fault: every write that would complete (or free) this key fails, as if the process died there.
    killKeyWrites = pk;
    const first = await post(key);
    killKeyWrites = undefined;
    expect(first.status).toBe(500);
    const created = (await jobsOf()).filter((j) => !before.has(j));
    expect(created).toHaveLength(1);
    const idem = await stack.ctx.clients.ddb.send(
      new GetCommand({ TableName: stack.ctx.cfg.jobsTable, Key: { pk, sk: 'IDEM' } }),
    );
    expect(idem.Item).toMatchObject({ state: 'in-progress', jobId: created[0] });
    // While its lock lives, a retry waits; once it expired, the retry gets the existing job.
    expect((await post(key)).status).toBe(409);
    await expireLock(pk);
    const retried = await post(key);
    expect(retried.status).toBe(202);
    expect(retried.headers.get('idempotent-replayed')).toBe('true');
    expect(retried.data.id).toBe(created[0]);
    expect((await jobsOf()).filter((j) => !before.has(j))).toEqual(created);
    const done = await waitFor('the job to complete', async () => {
      const r = await api(stack).call('GET', `/v1/jobs/${created[0]}`);
      return r.data.status === 'completed' ? r.data : null;
    });
    expect(done.images).toHaveLength(1);
  });

  it('a request that dies after writing image items but before its job: the retry creates that job, whole', async () => {
    const key = 'die-before-job';
    const pk = await idemPk(key);
    const before = new Set(await jobsOf());
    killJobPut = true;
    killKeyWrites = pk; // the failure handler cannot free the key either: the process is gone
    const first = await post(key);
    killJobPut = false;
    killKeyWrites = undefined;
    expect(first.status).toBe(500);
    expect((await jobsOf()).filter((j) => !before.has(j))).toHaveLength(0);
    const idem = await stack.ctx.clients.ddb.send(
      new GetCommand({ TableName: stack.ctx.cfg.jobsTable, Key: { pk, sk: 'IDEM' } }),
    );
    const jobId = idem.Item!.jobId as string;
    await expireLock(pk);
    const retried = await post(key);
    expect(retried.status).toBe(202);
    expect(retried.data.id).toBe(jobId);
    // Only the retry's own image: the dead request's image item and original are gone.
    const done = await waitFor('the job to complete', async () => {
      const r = await api(stack).call('GET', `/v1/jobs/${jobId}`);
      return r.data.status === 'completed' ? r.data : null;
    });
    expect(done.images).toHaveLength(1);
    expect(await listKeys(stack, stack.ctx.cfg.uploadsBucket, `inputs/demo/${jobId}/`)).toEqual([]);
  });

  it('a request that dies between writing its job and queueing its images: the sweeper queues them', async () => {
    const key = 'die-before-enqueue';
    const pk = await idemPk(key);
    const before = new Set(await jobsOf());
    hangJobEnqueue = true;
    const form = new FormData();
    form.append('image', new Blob([SAMPLE], { type: 'image/jpeg' }), 'photo.jpg');
    form.append('options', JSON.stringify({ steps: 1 }));
    const gone = new AbortController();
    const first = fetch(`${stack.url}/v1/jobs`, {
      method: 'POST',
      body: form,
      headers: { authorization: `Bearer ${stack.apiKey}`, 'idempotency-key': key },
      signal: gone.signal,
    }).catch(() => 'aborted');
    const jobId = await waitFor('the job item', async () => (await jobsOf()).find((j) => !before.has(j)));
    gone.abort();
    expect(await first).toBe('aborted');
    hangJobEnqueue = false;
    await expireLock(pk);
    const retried = await post(key);
    expect(retried.status).toBe(202);
    expect(retried.data.id).toBe(jobId);
    expect(retried.data.status).toBe('queued');
    // The sweeper only looks once the creating request must be dead (its lock outlives the API timeout).
    const s = makeSweepHandler(stack.ctx);
    expect((await s()).unqueued).toBe(0);
    const later = { ...stack.ctx, now: () => Date.now() + 61_000 };
    expect((await makeSweepHandler(later)()).unqueued).toBe(1);
    expect((await makeSweepHandler(later)()).unqueued).toBe(0);
    await waitFor('the job to complete', async () => {
      const r = await api(stack).call('GET', `/v1/jobs/${jobId}`);
      return r.data.status === 'completed';
    });
  });

  it("a deleted job's key is free", async () => {
    const key = 'race-deleted';
    const a = await post(key);
    expect(a.status).toBe(202);
    expect((await post(key)).data.id).toBe(a.data.id); // replay while the job lives
    expect((await api(stack).call('DELETE', `/v1/jobs/${a.data.id}`)).status).toBe(204);
    const b = await post(key);
    expect(b.status).toBe(202);
    expect(b.data.id).not.toBe(a.data.id);
  });
});

describe('lost events are recovered', () => {
  it('a dropped S3 event: the reconciler completes the image from S3, billed once', async () => {
    dropEvents = true;
    const res = await api(stack).postImages([{ bytes: SAMPLE }], {
      options: { steps: 2 },
      webhook: hook.url,
    });
    const jobId = res.data.id as string;
    const imageId = res.data.images[0].id as string;
    await waitFor(
      'the result in S3',
      async () =>
        (
          await stack.ctx.clients.s3.send(
            new (await import('@aws-sdk/client-s3')).ListObjectsV2Command({
              Bucket: stack.ctx.cfg.resultsBucket,
              Prefix: `results/demo/${jobId}/`,
            }),
          )
        ).KeyCount,
    );
    dropEvents = false;
    expect((await getImage(stack.ctx, jobId, imageId))?.status).toBe('processing');
    await new Promise((r) => setTimeout(r, 1500)); // past RECONCILE_AFTER_SECONDS
    const s = await stack.sweep();
    // ≥ 1: the previous tests' images finished while events were dropped are completed too.
    expect(s.completed).toBeGreaterThanOrEqual(1);
    expect((await getImage(stack.ctx, jobId, imageId))?.status).toBe('done');
    await stack.sweep();
    const usage = (await listUsage(stack.ctx, 'demo', month())).filter((u) => u.jobId === jobId);
    expect(usage).toHaveLength(1);
    await waitFor('webhook', async () =>
      hook.received.some((r) => r.headers['webhook-id'] === `msg_${jobId}`),
    );
  });

  it('a failed webhook enqueue after the job finished: the outbox sweep delivers it exactly once', async () => {
    const jobId = await completedJobWithFailedWebhookEnqueue();
    expect(failWebhookSends).toBe(0);
    const job = (await api(stack).call('GET', `/v1/jobs/${jobId}`)).data;
    expect(job.webhook.status).toBe('pending');
    const s = await stack.sweep();
    expect(s.outbox).toBe(1);
    await stack.sweep(); // a second sweep finds nothing left
    await waitFor('webhook', async () =>
      hook.received.some((r) => r.headers['webhook-id'] === `msg_${jobId}`),
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect(hook.received.filter((r) => r.headers['webhook-id'] === `msg_${jobId}`)).toHaveLength(1);
  });
});

describe('webhook redelivery is on the books', () => {
  it('a dispatcher that dies after the HTTP delivery: the next one resends the same webhook-id and records it', async () => {
    // The eager enqueue fails: nothing but this test dispatches the job's webhook.
    const jobId = await completedJobWithFailedWebhookEnqueue();
    const msg = { v: 1 as const, jobId, tenant: 'demo', attempt: 1 };
    const ofJob = () => hook.received.filter((r) => r.headers['webhook-id'] === `msg_${jobId}`);
    // The first dispatcher delivers, then dies before recording it (its promise never settles).
    void processWebhookMessage(stack.ctx, msg, async (...a) => {
      await deliver(...a);
      return new Promise<never>(() => undefined);
    });
    await waitFor('the first delivery', async () => ofJob().length === 1);
    const mid = await getJob(stack.ctx, jobId);
    expect(mid?.webhookStatus).toBe('pending');
    expect(mid?.webhookSendingSince).toBeGreaterThan(0);
    // While its lease lives nobody else sends; once it expired (past WEBHOOK_TIMEOUT_MS + 5 s) the next one does.
    await expect(processWebhookMessage(stack.ctx, msg)).rejects.toThrow(/held by another dispatcher/);
    const later = { ...stack.ctx, now: () => Date.now() + 60_000 };
    expect(await processWebhookMessage(later, msg)).toBe('delivered');
    const got = ofJob();
    expect(got).toHaveLength(2);
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(1);
    const after = await getJob(stack.ctx, jobId);
    expect(after).toMatchObject({ webhookStatus: 'delivered', webhookResends: 1 });
    expect(after?.webhookSendingSince).toBeUndefined();
    // A late duplicate message finds nothing to send.
    expect(await processWebhookMessage(later, msg)).toBe('skipped');
  });
});

describe('cancellation', () => {
  it('DELETE mid-optimization stops the work within a step or two (its next progress write is refused)', async () => {
    // 500 steps × 20 ms = 10 s of work if nothing stopped it.
    const res = await api(stack).postImages([{ bytes: SAMPLE }], { options: { steps: 500 } });
    const jobId = res.data.id as string;
    const imageId = res.data.images[0].id as string;
    await waitFor('mid-optimization', async () => {
      const i = await getImage(stack.ctx, jobId, imageId);
      return i?.status === 'processing' && i.stage === 'optimize';
    });
    const t0 = Date.now();
    expect((await api(stack).call('DELETE', `/v1/jobs/${jobId}`)).status).toBe(204);
    await stack.worker!.idle();
    // One progress interval (1 s) plus a step, with room for a loaded machine; below the 10 s of work.
    expect(Date.now() - t0).toBeLessThan(6000);
    const left = await stack.ctx.clients.s3.send(
      new (await import('@aws-sdk/client-s3')).ListObjectsV2Command({
        Bucket: stack.ctx.cfg.resultsBucket,
        Prefix: `results/demo/${jobId}/`,
      }),
    );
    expect(left.KeyCount ?? 0).toBe(0);
  });
});

describe('persistent local stack', () => {
  it('restarted mid-job: the job finishes after the restart and the same key works', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'falco-persist-'));
    const opts = {
      port: 0,
      webPage: false,
      dataDir: dir,
      worker: { visibilityTimeout: 5, heartbeatInterval: 1 },
      sweepIntervalMs: 500,
    };
    let s1: LocalStack | undefined = await startLocalStack({
      ...opts,
      anonymizer: createStandInAnonymizer({ stepMs: 100 }),
    });
    let s2: LocalStack | undefined;
    try {
      const res = await api(s1).postImages([{ bytes: SAMPLE }], { options: { steps: 30 } });
      const jobId = res.data.id as string;
      const imageId = res.data.images[0].id as string;
      await waitFor('mid-optimization', async () => {
        const i = await getImage(s1!.ctx, jobId, imageId);
        return i?.status === 'processing' && i.progress > 0.2;
      });
      const key = s1.apiKey;
      await s1.kill();
      s1 = undefined;
      s2 = await startLocalStack({ ...opts, anonymizer: createStandInAnonymizer({ stepMs: 10 }) });
      expect(s2.apiKey).toBe(key);
      const done = await waitFor(
        'job completed after restart',
        async () => {
          const r = await api(s2!).call('GET', `/v1/jobs/${jobId}`);
          return r.data?.status === 'completed' ? r.data : null;
        },
        30_000,
      );
      expect(done.images[0].status).toBe('done');
      const usage = (await listUsage(s2.ctx, 'demo', month())).filter((u) => u.jobId === jobId);
      expect(usage).toHaveLength(1);
      // The key from before the restart still works.
      const again = await api(s2, key).postImages([{ bytes: SAMPLE }], { options: { steps: 1 } });
      expect(again.status).toBe(202);
    } finally {
      await s1?.kill();
      await s2?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
