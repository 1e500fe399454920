/**
 * `npm start`: the whole service on this machine at http://localhost:8787 — API, worker, completion,
 * DLQ and webhook dispatcher against in-process emulators, with the demo model bundle.
 */
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../shared/logger.js';
import { loadEngine } from '../worker/engine.js';
import { loadLimits } from '../shared/limits.js';
import { createStandInAnonymizer } from './stand-in.js';
import { startLocalStack } from './stack.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function main(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const log = createLogger('local', process.env.LOG_LEVEL ?? 'INFO');
  const bundleDir = process.env.BUNDLE_DIR ?? join(root, 'var', 'bundles', 'demo');
  // First run on a fresh checkout: build the demo bundle (deterministic, seconds) so `npm start` alone
  // gives the real pipeline. An explicit BUNDLE_DIR is never built over.
  if (!process.env.BUNDLE_DIR && !existsSync(join(bundleDir, 'manifest.json'))) {
    process.stdout.write(`building the demo model bundle into ${bundleDir} (first run only)…\n`);
    try {
      const { buildDemoBundle } = await import('../../models/bundle/demo.js');
      await buildDemoBundle({ outDir: bundleDir });
    } catch (e) {
      log.error('demo bundle build failed; falling back to the stand-in engine', {
        error: (e as Error).message,
      });
    }
  }
  const { anonymizer, real } = await loadEngine({
    bundleDir,
    log,
    limits: loadLimits(),
    standIn: async () => createStandInAnonymizer({ stepMs: 150 }),
  });
  const port = Number(process.env.PORT ?? 8787);
  const stack = await startLocalStack({
    port,
    anonymizer,
    logLevel: process.env.LOG_LEVEL ?? 'INFO',
    worker: { visibilityTimeout: 120 },
  });
  const url = stack.url.replace('127.0.0.1', 'localhost');
  process.stdout.write(
    [
      '',
      `FALCO local stack ready on ${url}`,
      `  engine:       ${real ? `real (bundle ${bundleDir})` : 'STAND-IN (not anonymizing! build the demo bundle: npm run models -- demo)'}`,
      `  web page:     ${url}/`,
      `  API docs:     ${url}/docs   (OpenAPI: ${url}/openapi.json)`,
      `  demo API key: ${stack.apiKey}`,
      `  webhook secret (tenant "demo"): ${stack.webhookSecret}`,
      '',
      `  curl -H "Authorization: Bearer ${stack.apiKey}" -F image=@photo.jpg ${url}/v1/jobs`,
      '',
    ].join('\n') + '\n',
  );
  const shutdown = async () => {
    await stack.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
}

main().catch((err) => {
  console.error('local stack failed to start:', err);
  process.exit(1);
});
