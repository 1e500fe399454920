/**
 * ECS worker task entry: download the model bundle (BUNDLE_URI), load the engine, consume the jobs queue,
 * stop gracefully on SIGTERM (ECS sends it before SIGKILL; stopTimeout should exceed the grace below).
 */
import { createContext } from '../shared/context.js';
import { errFields } from '../shared/logger.js';
import { writeFile } from 'node:fs/promises';
import { downloadBundle, loadEngine } from './engine.js';
import { startWorker } from './worker.js';

async function main(): Promise<void> {
  const ctx = createContext('worker');
  const bundleDir = process.env.BUNDLE_DIR ?? '/tmp/bundle';
  if (ctx.cfg.bundleUri) await downloadBundle(ctx.clients.s3, ctx.cfg.bundleUri, bundleDir);
  const { anonymizer, status } = await loadEngine({ bundleDir, log: ctx.log, limits: ctx.cfg.limits });
  // The worker's status (it serves no HTTP): logged once, and written where `docker exec`/a health check can
  // read it. `provider` is what a GPU task must show as "cuda".
  const workerStatus = { ready: true, pid: process.pid, startedAt: new Date().toISOString(), ...status };
  ctx.log.info('worker engine ready', workerStatus);
  await writeFile(
    process.env.WORKER_STATUS_FILE ?? '/tmp/falco-worker-status.json',
    JSON.stringify(workerStatus),
  ).catch((err) => ctx.log.warn('could not write the worker status file', errFields(err)));
  const worker = startWorker(ctx, anonymizer, {
    visibilityTimeout: Number(process.env.VISIBILITY_TIMEOUT ?? 120),
    shutdownGraceMs: Number(process.env.SHUTDOWN_GRACE_MS ?? 25_000),
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
