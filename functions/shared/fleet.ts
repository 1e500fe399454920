/**
 * The GPU fleet as the API sees it (issue #13): wake it when a job arrives and no worker runs, and tell the
 * customer, per queued image, that it waits for a GPU to boot and for about how long.
 *
 * Why the API sets the desired count itself: the scaling policies read SQS metrics, which CloudWatch publishes
 * once a minute and which lag on a queue that was idle; the alarm path then adds one to several minutes to a
 * cold start that is already 5-10 minutes. `UpdateService desiredCount=1` starts the instance boot in the
 * request that enqueued the job. Application Auto Scaling stays in charge afterwards (its min is 0 and the
 * backlog target tracks from there; it never fights a count of 1 while jobs are queued).
 *
 * Off (every call a no-op) where WORKER_CLUSTER / WORKER_SERVICE are not set: the local stack's worker always runs.
 */
import { DescribeServicesCommand, ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import type { ServiceContext } from './context.js';
import { errFields } from './logger.js';

/** Instance boot + ECS registration + image pull + bundle download + session warm-up, measured as 5-10 min. */
export const DEFAULT_COLD_START_SECONDS = 420;
/** How long a fleet reading is reused by one API instance (a GET of a queued job polls every few seconds). */
const CACHE_MS = 15_000;

export interface FleetState {
  desired: number;
  running: number;
  /** When this process last saw it (ms). */
  at: number;
}

let client: ECSClient | undefined;
let cached: FleetState | undefined;

function target(env: NodeJS.ProcessEnv = process.env): { cluster: string; service: string } | null {
  const cluster = env.WORKER_CLUSTER;
  const service = env.WORKER_SERVICE;
  return cluster && service ? { cluster, service } : null;
}

function ecs(ctx: ServiceContext): ECSClient {
  return (client ??= new ECSClient({ region: ctx.cfg.region }));
}

/** The service's desired and running task counts (cached briefly); null when unknown or not configured. */
export async function fleetState(ctx: ServiceContext): Promise<FleetState | null> {
  const t = target();
  if (!t) return null;
  if (cached && ctx.now() - cached.at < CACHE_MS) return cached;
  try {
    const out = await ecs(ctx).send(
      new DescribeServicesCommand({ cluster: t.cluster, services: [t.service] }),
    );
    const s = out.services?.[0];
    if (!s) return null;
    cached = { desired: s.desiredCount ?? 0, running: s.runningCount ?? 0, at: ctx.now() };
    return cached;
  } catch (err) {
    ctx.log.warn('fleet state unavailable', errFields(err));
    return null;
  }
}

/**
 * Called after a job's images are enqueued: when the service wants no task, ask for one. Never fails the
 * request (the scaling alarm remains the fallback); returns whether this call woke the fleet.
 */
export async function wakeFleet(ctx: ServiceContext): Promise<boolean> {
  const t = target();
  if (!t) return false;
  const state = await fleetState(ctx);
  if (state && state.desired > 0) return false;
  try {
    await ecs(ctx).send(
      new UpdateServiceCommand({ cluster: t.cluster, service: t.service, desiredCount: 1 }),
    );
    cached = { desired: 1, running: state?.running ?? 0, at: ctx.now() };
    ctx.log.info('fleet woken: desired count 0 -> 1');
    return true;
  } catch (err) {
    ctx.log.warn('could not wake the fleet; the scaling alarm will', errFields(err));
    return false;
  }
}

/**
 * For a queued image: `waiting_for_worker` and the seconds left of a typical cold start (counted from the job's
 * creation, which woke the fleet), when no worker task runs; null otherwise (a worker will pick it up soon).
 */
export async function waitingForWorker(
  ctx: ServiceContext,
  createdAt: string,
): Promise<{ stage: 'waiting_for_worker'; estimatedWaitSeconds: number } | null> {
  const state = await fleetState(ctx);
  if (!state || state.running > 0) return null;
  const coldStart = Number(process.env.COLD_START_SECONDS) || DEFAULT_COLD_START_SECONDS;
  const elapsed = Math.max(0, (ctx.now() - Date.parse(createdAt)) / 1000);
  // Never 0 while nothing runs: past the typical time, say "about a minute" rather than a wrong "now".
  return { stage: 'waiting_for_worker', estimatedWaitSeconds: Math.max(60, Math.round(coldStart - elapsed)) };
}

/** Tests: forget the cached reading and client. */
export function resetFleetCache(): void {
  cached = undefined;
  client = undefined;
}
