/**
 * Crash safety: a worker killed with SIGKILL mid-optimization loses its message's lease; SQS redelivers it to
 * another worker after the visibility timeout; the job completes once, is billed once, and notifies once.
 * Also: SIGTERM hands the in-flight message back immediately (graceful shutdown).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { listUsage } from '../../functions/shared/usage-repo.js';
import { getImage } from '../../functions/shared/jobs-repo.js';
import { api, SAMPLE, startReceiver, waitFor, type Receiver } from './helpers.js';

let stack: LocalStack;
let hook: Receiver;
const children: ChildProcess[] = [];

function spawnWorker(extraEnv: Record<string, string> = {}): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./worker-child.ts', import.meta.url).pathname],
    {
      env: { ...process.env, ...stack.env, LOG_LEVEL: 'INFO', STANDIN_STEP_MS: '250', ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

beforeAll(async () => {
  // No in-process worker: the child processes are the only consumers.
  stack = await startLocalStack({ port: 0, webPage: false, jobsVisibilityTimeout: 3, maxReceiveCount: 5 });
  hook = await startReceiver();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await hook?.close();
  await stack?.stop();
});

async function createJob(): Promise<{ jobId: string; imageId: string }> {
  const res = await api(stack).postImages([{ bytes: SAMPLE }], { options: { steps: 16 }, webhook: hook.url });
  expect(res.status).toBe(202);
  return { jobId: res.data.id, imageId: res.data.images[0].id };
}

async function waitMidOptimization(jobId: string, imageId: string) {
  return waitFor(
    'the worker to be mid-optimization',
    async () => {
      const img = await getImage(stack.ctx, jobId, imageId);
      return img?.status === 'processing' && img.stage === 'optimize' && img.progress > 0.1 ? img : null;
    },
    60_000,
    100,
  );
}

async function waitCompleted(jobId: string) {
  return waitFor(
    `job ${jobId} completed`,
    async () => {
      const r = await api(stack).call('GET', `/v1/jobs/${jobId}`);
      return r.data?.status === 'completed' ? r.data : null;
    },
    60_000,
  );
}

describe('worker crash and shutdown', () => {
  it('SIGKILL mid-optimization: redelivered, completed once, billed once, one webhook', async () => {
    const { jobId, imageId } = await createJob();
    const first = spawnWorker();
    const mid = await waitMidOptimization(jobId, imageId);
    expect(mid.progress).toBeLessThan(1);
    first.child.kill('SIGKILL');
    await first.exited;
    expect(first.output()).not.toContain('"message":"image anonymized"');

    const second = spawnWorker();
    const job = await waitCompleted(jobId);
    expect(job.counts.done).toBe(1);
    await waitFor('webhook', async () => hook.received.length >= 1);
    // Give any duplicate (event, message, webhook) time to show up before counting.
    await new Promise((r) => setTimeout(r, 2500));
    // A redelivery (local-aws-sqs may count the lapsed lease as well, so ≥ 2 rather than exactly 2).
    expect(
      Number(
        /"message":"message handled".*"outcome":"done".*"receiveCount":(\d+)/.exec(second.output())?.[1],
      ),
    ).toBeGreaterThanOrEqual(2);
    const usage = (await listUsage(stack.ctx, 'demo', new Date().toISOString().slice(0, 7))).filter(
      (u) => u.jobId === jobId,
    );
    expect(usage.map((u) => u.imageId)).toEqual([imageId]);
    expect(hook.received.filter((r) => r.headers['webhook-id'] === `msg_${jobId}`)).toHaveLength(1);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });

  it('SIGTERM mid-image hands the message back at once; the next worker finishes it', async () => {
    const { jobId, imageId } = await createJob();
    // Long visibility: without the hand-back the next worker would wait 60 s.
    const first = spawnWorker({ VISIBILITY_TIMEOUT: '60', SHUTDOWN_GRACE_MS: '300' });
    await waitMidOptimization(jobId, imageId);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.output()).toContain('in-flight image handed back to the queue');
    const t0 = Date.now();
    const second = spawnWorker({ VISIBILITY_TIMEOUT: '60' });
    const job = await waitCompleted(jobId);
    expect(Date.now() - t0).toBeLessThan(45_000); // well under the 60 s visibility timeout
    expect(job.images[0].status).toBe('done');
    const usage = (await listUsage(stack.ctx, 'demo', new Date().toISOString().slice(0, 7))).filter(
      (u) => u.jobId === jobId,
    );
    expect(usage).toHaveLength(1);
    second.child.kill('SIGTERM');
    await second.exited;
  });
});
