/**
 * The worker container's health check (functions/worker/health.ts): the exact command the task definition runs,
 * executed with node against status files, and the worker's heartbeat — fresh while idle and while the engine
 * makes progress, stale once the engine hangs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHeartbeat, healthCheckCommand } from '../../functions/worker/health.js';
import { startWorker } from '../../functions/worker/worker.js';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import type { Anonymizer } from '../../functions/pipeline/types.js';
import { api, SAMPLE, waitFor } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'falco-health-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the task definition's health-check command as ECS would (CMD form: argv, no shell). */
function check(file: string, maxAgeS = 180): { code: number | null; stderr: string } {
  const [form, exe, ...args] = healthCheckCommand(file, maxAgeS);
  expect(form).toBe('CMD');
  expect(exe).toBe('node');
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, stderr: r.stderr };
}

describe('health check command', () => {
  it('is healthy on a fresh heartbeat and unhealthy on a stale, missing or unreadable one', async () => {
    const file = join(dir, 'status.json');
    await writeFile(file, JSON.stringify({ ready: true, heartbeatAt: Date.now() - 5_000 }));
    expect(check(file)).toEqual({ code: 0, stderr: '' });
    await writeFile(file, JSON.stringify({ ready: true, heartbeatAt: Date.now() - 200_000 }));
    const stale = check(file);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/unhealthy: heartbeat 20\d s old/);
    await writeFile(file, JSON.stringify({ ready: true }));
    expect(check(file)).toMatchObject({ code: 1, stderr: expect.stringMatching(/heartbeat missing/) });
    await writeFile(file, '{"ready":');
    expect(check(file).code).toBe(1);
    expect(check(join(dir, 'absent.json'))).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/ENOENT/),
    });
  });

  it('reads what the heartbeat writes', async () => {
    const file = join(dir, 'beat.json');
    const hb = createHeartbeat(file, { ready: false }, { writeEveryMs: 0 });
    await hb.flush();
    expect(check(file).code).toBe(0);
    await hb.update({ ready: true, provider: 'cpu' });
    const s = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(s).toMatchObject({ ready: true, provider: 'cpu' });
    expect(Date.now() - Number(s.heartbeatAt)).toBeLessThan(5_000);
    expect(check(file, 0).code).toBe(1); // any age beyond 0 s is too old
  });
});

describe('worker heartbeat', () => {
  let stack: LocalStack;
  beforeAll(async () => {
    stack = await startLocalStack({ port: 0, webPage: false, sweepIntervalMs: 0 });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('beats while idle and on every engine step, and stops when the engine hangs', async () => {
    const beats: number[] = [];
    let during: [number, number] | undefined;
    // Ten steps of 50 ms with a progress callback each, then a call that never returns (until aborted).
    const engine: Anonymizer = {
      async anonymize(_input, _options, onProgress, signal) {
        const atStart = beats.length;
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 50));
          signal?.throwIfAborted();
          onProgress?.({ fraction: i / 10, stage: 'optimize' });
        }
        during = [atStart, beats.length];
        return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason)));
      },
      close: async () => undefined,
    };
    const worker = startWorker(stack.ctx, engine, {
      waitTimeSeconds: 1,
      visibilityTimeout: 30,
      alive: () => beats.push(Date.now()),
      aliveEveryMs: 100,
    });
    try {
      await waitFor('idle beats', async () => beats.length >= 3);
      const res = await api(stack).postImages([{ bytes: SAMPLE }], { options: { steps: 1 } });
      expect(res.status).toBe(202);
      const [atStart, atEnd] = await waitFor('the engine to hang', async () => during);
      // Each step's progress callback beat once, and the idle timer did not beat while the image was in flight.
      expect(atEnd - atStart).toBe(10);
      // Hung: no beat at all, so the status file goes stale and the health check fails.
      await new Promise((r) => setTimeout(r, 800));
      expect(beats.length).toBe(atEnd);
    } finally {
      await worker.crash();
    }
  });
});
