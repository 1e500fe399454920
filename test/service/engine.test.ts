/**
 * The service with the real engine (functions/pipeline/anonymize.ts) loaded the way the worker loads it
 * (loadEngine), on the demo bundle (FALCO's networks at demo size, built here in about a
 * second exactly as `npm run models -- demo` builds it): proves the contract end to end — options pass
 * through, progress reaches the jobs table, the engine's report lands in the job JSON, the image is billed once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { loadEngine } from '../../functions/worker/engine.js';
import { createLogger } from '../../functions/shared/logger.js';
import { listUsage } from '../../functions/shared/usage-repo.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { api, SAMPLE2, waitFor } from './helpers.js';
import { JobSchema } from '../../functions/api/schemas.js';
import type { FaceReport } from '../../functions/pipeline/types.js';

let stack: LocalStack;

beforeAll(async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'falco-demo-')), 'demo');
  await buildDemoBundle({ outDir: dir, poolSize: 8 });
  const { anonymizer, real } = await loadEngine({ bundleDir: dir, log: createLogger('test', 'ERROR') });
  expect(real).toBe(true);
  stack = await startLocalStack({ port: 0, anonymizer, webPage: false, worker: { visibilityTimeout: 30 } });
});

afterAll(async () => {
  await stack?.stop();
});

describe('real engine (demo bundle)', () => {
  it('anonymizes through the queue and reports per face', async () => {
    const photo = await sharp(SAMPLE2).resize({ width: 800 }).jpeg().toBuffer();
    const client = api(stack);
    const created = await client.postImages([{ bytes: photo, name: 'people.jpg' }], {
      options: { steps: 2, seed: 5, format: 'webp' },
    });
    expect(created.status).toBe(202);
    const job = await waitFor(
      'job to finish',
      async () => {
        const r = await client.call('GET', `/v1/jobs/${created.data.id}`);
        return ['completed', 'failed'].includes(r.data.status) ? r.data : null;
      },
      240_000,
      300,
    );
    expect(job.images[0].error).toBeNull();
    expect(job.status).toBe('completed');
    const img = job.images[0];
    expect(img.result.contentType).toBe('image/webp');
    expect(img.report.bundle).toEqual({ id: expect.stringMatching(/^demo-/), demo: true });
    expect(img.report.outcome).toBe('ok');
    // Where the models ran, per image (issue #13); this machine has no CUDA provider, so 'auto' chose the CPU.
    expect(img.report.provider).toBe('cpu');
    expect(img.report.faces.length).toBeGreaterThan(0);
    for (const f of img.report.faces) {
      expect(f.reidentified).toBe(false);
      expect(f.losses.length).toBeGreaterThanOrEqual(2);
    }
    // The job view shows the utility check of every FALCO face (issue #10), and the whole job JSON is what
    // the OpenAPI schema documents: parsing strips undocumented fields, so any would show as a difference.
    const falco = img.report.faces.filter((f: FaceReport) => f.method === 'falco');
    expect(falco.length).toBeGreaterThan(0);
    for (const f of falco as FaceReport[]) {
      expect(f.attributes!.original.age).toBeGreaterThan(0);
      expect(f.attributes!.anonymized.pose).toBeDefined();
      expect(typeof f.attributes!.change.genderKept).toBe('boolean');
    }
    expect(JobSchema.parse(job)).toEqual(job);
    const out = await sharp(Buffer.from(await (await fetch(img.result.url)).arrayBuffer())).metadata();
    expect([out.format, out.width]).toEqual(['webp', 800]);
    const usage = (await listUsage(stack.ctx, 'demo', new Date().toISOString().slice(0, 7))).filter(
      (u) => u.jobId === job.id,
    );
    expect(usage).toHaveLength(1);
  });
});
