/**
 * The container's start, exercised without Docker: the worker bundled by esbuild (functions/worker/bundle.ts,
 * as the image's build stage does) and started exactly as the image's CMD starts it —
 * `node --enable-source-maps dist/worker/main.mjs`, plain JavaScript, no TypeScript loader — against the local
 * stack's emulators, on the CPU (FALCO_PROVIDER=cpu; the task definition sets cuda). It downloads the model
 * bundle from S3 (BUNDLE_URI), reports its status, anonymizes a job end to end and stops cleanly on SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { bundleWorker } from '../../functions/worker/bundle.js';
import { healthCheckCommand } from '../../functions/worker/health.js';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { REPO_ROOT } from '../../models/fixtures/paths.js';
import { api, SAMPLE, waitFor } from './helpers.js';

let stack: LocalStack;
let child: ChildProcess | undefined;
let out = '';
let main: string;
let work: string;

async function files(dir: string): Promise<string[]> {
  const ents = await readdir(dir, { withFileTypes: true, recursive: true });
  return ents.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'falco-image-'));
  // The image's layout: /app/node_modules (production dependencies) next to /app/dist/worker/main.mjs.
  await symlink(join(REPO_ROOT, 'node_modules'), join(work, 'node_modules'), 'dir');
  ({ file: main } = await bundleWorker(join(work, 'dist', 'worker')));
  const bundle = join(work, 'demo');
  await buildDemoBundle({ outDir: bundle, poolSize: 4 });
  stack = await startLocalStack({ port: 0, webPage: false });
  const s3 = stack.ctx.clients.s3;
  await s3.send(new CreateBucketCommand({ Bucket: 'models' }));
  for (const f of await files(bundle))
    await s3.send(
      new PutObjectCommand({
        Bucket: 'models',
        Key: `bundles/current/${relative(bundle, f)}`,
        Body: await readFile(f),
      }),
    );
}, 180_000);

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await stack?.stop();
});

describe('worker image entry point (bundled, as the CMD runs it)', () => {
  it('starts from the bundle, reports its provider, anonymizes a job and stops on SIGTERM', async () => {
    const source = readFileSync(main, 'utf8');
    expect(source).not.toMatch(/from ["'](s3rver|dynalite|local-aws-sqs|tsx)["']/);
    const statusFile = join(work, 'status.json');
    child = spawn(process.execPath, ['--enable-source-maps', main], {
      cwd: work, // nothing of the repository next to it, like /app in the image
      env: {
        ...process.env,
        ...stack.env,
        BUNDLE_URI: 's3://models/bundles/current/',
        BUNDLE_DIR: join(work, 'bundle-downloaded'),
        FALCO_PROVIDER: 'cpu',
        WORKER_STATUS_FILE: statusFile,
        VISIBILITY_TIMEOUT: '60',
        LOG_LEVEL: 'INFO',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));

    const status = await waitFor(
      'the worker to be ready',
      async () => {
        if (child!.exitCode !== null) throw new Error(`worker exited ${child!.exitCode}:\n${out}`);
        try {
          const s = JSON.parse(readFileSync(statusFile, 'utf8')) as Record<string, unknown>;
          return s.ready ? s : null; // written from the start (ready: false) for the health check
        } catch {
          return null;
        }
      },
      120_000,
      200,
    );
    expect(status).toMatchObject({
      ready: true,
      provider: 'cpu',
      demo: true,
      bundleId: expect.stringMatching(/^demo-/),
    });
    expect(out).toMatch(/"message":"worker engine ready"/);
    // The task definition's health check, run as ECS runs it, passes against the live worker.
    const [, , ...hcArgs] = healthCheckCommand(statusFile);
    expect(spawnSync(process.execPath, hcArgs, { encoding: 'utf8' }).status).toBe(0);
    expect(out).toMatch(/onnxruntime session on CPU \(FALCO_PROVIDER=cpu\)/);

    const res = await api(stack).postImages([{ bytes: SAMPLE }], { options: { steps: 2 } });
    expect(res.status).toBe(202);
    const job = await waitFor(
      'the job to finish',
      async () => {
        const r = await api(stack).call('GET', `/v1/jobs/${res.data.id}`);
        return ['completed', 'failed'].includes(r.data.status) ? r.data : null;
      },
      180_000,
      300,
    );
    expect(job.images[0].error).toBeNull();
    expect(job.status).toBe('completed');
    expect(job.images[0].report.provider).toBe('cpu');

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toMatch(/"message":"worker stopped"/);
  }, 400_000);
});
