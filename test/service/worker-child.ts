/**
 * A worker process for the kill/shutdown tests: the production consumer loop (startWorker) with the slow
 * stand-in engine, configured entirely from the environment the test passes (the local stack's endpoints).
 */
import { createContext } from '../../functions/shared/context.js';
import { startWorker } from '../../functions/worker/worker.js';
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';

const ctx = createContext('worker-child');
const worker = startWorker(
  ctx,
  createStandInAnonymizer({ stepMs: Number(process.env.STANDIN_STEP_MS ?? 200) }),
  {
    waitTimeSeconds: 1,
    visibilityTimeout: Number(process.env.VISIBILITY_TIMEOUT ?? 3),
    heartbeatInterval: 1,
    shutdownGraceMs: Number(process.env.SHUTDOWN_GRACE_MS ?? 500),
  },
);
process.once('SIGTERM', () => {
  void worker.stop().then(() => process.exit(0));
});
