/**
 * The API's wake-up path (functions/shared/fleet.ts) against a recorded ECS client: enqueueing into an idle
 * fleet sets the worker service's desired count to 1 (once), a busy fleet is left alone, and a queued image
 * says it waits for a worker, with the seconds left of a typical cold start.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import {
  DEFAULT_COLD_START_SECONDS,
  resetFleetCache,
  wakeFleet,
  waitingForWorker,
} from '../../functions/shared/fleet.js';
import { createLogger } from '../../functions/shared/logger.js';
import type { ServiceContext } from '../../functions/shared/context.js';

let now = Date.parse('2026-01-01T00:00:00Z');
const ctx = {
  cfg: { region: 'eu-west-1' },
  log: createLogger('test', 'ERROR'),
  now: () => now,
} as unknown as ServiceContext;

let service = { desiredCount: 0, runningCount: 0 };
const sent: Array<{ name: string; input: unknown }> = [];

beforeEach(() => {
  resetFleetCache();
  sent.length = 0;
  process.env.WORKER_CLUSTER = 'falco-cluster';
  process.env.WORKER_SERVICE = 'falco-workers';
  vi.spyOn(ECSClient.prototype, 'send').mockImplementation(
    async (cmd: { constructor: { name: string }; input: unknown }) => {
      sent.push({ name: cmd.constructor.name, input: cmd.input });
      if (cmd instanceof UpdateServiceCommand) {
        service = { ...service, desiredCount: (cmd.input as { desiredCount: number }).desiredCount };
        return {};
      }
      return { services: [{ ...service }] };
    },
  );
});
afterEach(() => {
  vi.restoreAllMocks();
  delete process.env.WORKER_CLUSTER;
  delete process.env.WORKER_SERVICE;
});

describe('fleet wake-up', () => {
  it('sets desired count 1 when the service is at zero, and only then', async () => {
    service = { desiredCount: 0, runningCount: 0 };
    expect(await wakeFleet(ctx)).toBe(true);
    expect(sent.map((s) => s.name)).toEqual(['DescribeServicesCommand', 'UpdateServiceCommand']);
    expect(sent[1]!.input).toEqual({ cluster: 'falco-cluster', service: 'falco-workers', desiredCount: 1 });
    // A second job moments later: the cached reading says a task is wanted, nothing is sent.
    expect(await wakeFleet(ctx)).toBe(false);
    expect(sent.length).toBe(2);
  });

  it('leaves a running fleet alone', async () => {
    service = { desiredCount: 3, runningCount: 3 };
    expect(await wakeFleet(ctx)).toBe(false);
    expect(sent.map((s) => s.name)).toEqual(['DescribeServicesCommand']);
  });

  it('is a no-op without a configured service (local stack)', async () => {
    delete process.env.WORKER_SERVICE;
    expect(await wakeFleet(ctx)).toBe(false);
    expect(await waitingForWorker(ctx, new Date(now).toISOString())).toBeNull();
    expect(sent).toEqual([]);
  });

  it('reports waiting_for_worker with the time left of a cold start while no task runs', async () => {
    service = { desiredCount: 1, runningCount: 0 };
    const created = new Date(now - 120_000).toISOString();
    expect(await waitingForWorker(ctx, created)).toEqual({
      stage: 'waiting_for_worker',
      estimatedWaitSeconds: DEFAULT_COLD_START_SECONDS - 120,
    });
    // Long past the typical cold start it still says about a minute, never 0.
    expect((await waitingForWorker(ctx, new Date(now - 3_600_000).toISOString()))!.estimatedWaitSeconds).toBe(
      60,
    );
    // Once a task runs (after the cache expires), a queued image is simply queued.
    service = { desiredCount: 1, runningCount: 1 };
    now += 20_000;
    expect(await waitingForWorker(ctx, created)).toBeNull();
  });
});
