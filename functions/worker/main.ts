/**
 * ECS worker task entry: download the model bundle (BUNDLE_URI), load the engine, consume the jobs queue,
 * stop gracefully on SIGTERM (ECS sends it before SIGKILL; stopTimeout should exceed the grace below).
 */
import { createContext } from '../shared/context.js';
import { errFields } from '../shared/logger.js';
import { downloadBundle, loadEngine } from './engine.js';
import { startWorker } from './worker.js';

async function main(): Promise<void> {
  const ctx = createContext('worker');
  const bundleDir = process.env.BUNDLE_DIR ?? '/tmp/bundle';
  if (ctx.cfg.bundleUri) await downloadBundle(ctx.clients.s3, ctx.cfg.bundleUri, bundleDir);
  const { anonymizer } = await loadEngine({ bundleDir, log: ctx.log, limits: ctx.cfg.limits });
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
