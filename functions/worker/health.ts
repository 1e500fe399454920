/**
 * The worker's liveness, for the container health check. The worker serves no HTTP (and the CUDA base image has
 * no curl), so it writes its status file (provider, bundle id, …) with a heartbeat time, and the health check is
 * `node -e <HEALTH_CHECK_SCRIPT> <file> <max age>`: unhealthy when the file is missing, unreadable or its heartbeat
 * older than the max age. ECS then replaces the task (its message comes back after the visibility timeout).
 *
 * What keeps the heartbeat fresh is a sign of progress, not just a timer: while idle, the consumer loop beats on a
 * timer; while an image is in flight, only the optimisation's progress callbacks beat. A worker whose GPU call
 * hangs (the event loop is free, so a timer would keep beating, and so would the SQS visibility heartbeat, holding
 * the message for ever) goes stale and is replaced. A step takes seconds on CPU and milliseconds on a GPU, and the
 * longest stretch without a callback (detection of a 12-MP photo, ~1 min on CPU) is well inside the max age.
 */
import { rename, writeFile } from 'node:fs/promises';

export const DEFAULT_STATUS_FILE = '/tmp/falco-worker-status.json';
/** Heartbeat older than this: unhealthy. Three times the slowest stretch without a progress callback on CPU. */
export const HEARTBEAT_MAX_AGE_S = 180;
/** At most one write per this interval, however often the worker signals life. */
export const HEARTBEAT_WRITE_MS = 10_000;

/**
 * The health check, as `node -e` source (CommonJS, no dependencies: it runs in the image with nothing but node).
 * Arguments: the status file and the max age in seconds. Exit 0 healthy, 1 unhealthy with the reason on stderr.
 */
export const HEALTH_CHECK_SCRIPT = [
  "const fs=require('fs');",
  'try{',
  "const s=JSON.parse(fs.readFileSync(process.argv[1],'utf8'));",
  'const age=(Date.now()-Number(s.heartbeatAt))/1000;',
  "if(!(age<=Number(process.argv[2])))throw new Error('heartbeat '+(isFinite(age)?age.toFixed(0)+' s old':'missing'));",
  "}catch(e){console.error('unhealthy: '+e.message);process.exit(1)}",
].join('');

/** The ECS health-check command for a status file. */
export function healthCheckCommand(file = DEFAULT_STATUS_FILE, maxAgeS = HEARTBEAT_MAX_AGE_S): string[] {
  return ['CMD', 'node', '-e', HEALTH_CHECK_SCRIPT, file, String(maxAgeS)];
}

export interface Heartbeat {
  /** A sign of life: written at most every HEARTBEAT_WRITE_MS. */
  beat(): void;
  /** Replace the status fields (e.g. once the engine is ready) and write now. */
  update(status: Record<string, unknown>): Promise<void>;
  /** Write now (awaitable; tests). */
  flush(): Promise<void>;
}

export function createHeartbeat(
  file: string,
  status: Record<string, unknown>,
  opts: { writeEveryMs?: number; onError?: (err: unknown) => void } = {},
): Heartbeat {
  const every = opts.writeEveryMs ?? HEARTBEAT_WRITE_MS;
  let fields = { ...status };
  let last = 0;
  let writing: Promise<void> = Promise.resolve();
  const write = () => {
    last = Date.now();
    const body = JSON.stringify({ ...fields, heartbeatAt: last });
    // Write then rename: the health check never reads a half-written file.
    writing = writing
      .then(async () => {
        await writeFile(`${file}.tmp`, body);
        await rename(`${file}.tmp`, file);
      })
      .catch((err) => opts.onError?.(err));
    return writing;
  };
  return {
    beat: () => {
      if (Date.now() - last >= every) void write();
    },
    update: (status) => {
      fields = { ...fields, ...status };
      return write();
    },
    flush: () => write(),
  };
}
