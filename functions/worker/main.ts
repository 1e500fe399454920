/**
 * ECS worker task entry: download the model bundle (BUNDLE_URI), load the engine, consume the jobs queue,
 * stop gracefully on SIGTERM (ECS sends it before SIGKILL; stopTimeout should exceed the grace below).
 */
import { createContext } from '../shared/context.js';
import { errFields } from '../shared/logger.js';
import { downloadBundle, loadEngine } from './engine.js';
import { startWorker } from './worker.js';
import { createHeartbeat, DEFAULT_STATUS_FILE } from './health.js';

async function main(): Promise<void> {
  const ctx = createContext('worker');
  // The status file (health.ts) exists from the start: the container health check reads its heartbeat, which a
  // timer keeps fresh while the bundle downloads and the engine loads, then the worker's own signs of life.
  const heartbeat = createHeartbeat(
    process.env.WORKER_STATUS_FILE ?? DEFAULT_STATUS_FILE,
    { ready: false, pid: process.pid, startedAt: new Date().toISOString() },
    { onError: (err) => ctx.log.warn('could not write the worker status file', errFields(err)) },
  );
  await heartbeat.flush();
  const loading = setInterval(() => heartbeat.beat(), 5000);
  const bundleDir = process.env.BUNDLE_DIR ?? '/tmp/bundle';
  if (ctx.cfg.bundleUri) await downloadBundle(ctx.clients.s3, ctx.cfg.bundleUri, bundleDir);
  const { anonymizer, status } = await loadEngine({ bundleDir, log: ctx.log, limits: ctx.cfg.limits });
  clearInterval(loading);
  // The worker's status (it serves no HTTP): logged once, and in the status file where `docker exec` and the health
  // check read it. `provider` is what a GPU task must show as "cuda".
  const workerStatus = { ready: true, pid: process.pid, ...status };
  ctx.log.info('worker engine ready', workerStatus);
  await heartbeat.update(workerStatus);
  const worker = startWorker(ctx, anonymizer, {
    visibilityTimeout: Number(process.env.VISIBILITY_TIMEOUT ?? 120),
    shutdownGraceMs: Number(process.env.SHUTDOWN_GRACE_MS ?? 25_000),
    alive: () => heartbeat.beat(),
  });
  const shutdown = async (signal: string) => {
    ctx.log.info('shutdown requested', { signal });
    await worker.stop();
    await anonymizer.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err) => {
  console.error(JSON.stringify({ level: 'CRITICAL', message: 'worker failed to start', ...errFields(err) }));
  process.exit(1);
});
