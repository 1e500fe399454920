/**
 * Admission control on one emulated table shared by several "Lambda instances" (separate app + SDK clients):
 * the per-tenant in-flight cap and the per-minute job-creation limit hold across instances, slots come back
 * when images become terminal or are erased, and the compute budget is checked at creation and in the pipeline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { createContext, type ServiceContext } from '../../functions/shared/context.js';
import { createApp } from '../../functions/api/app.js';
import { inFlightImages } from '../../functions/shared/admission.js';
import { failImage } from '../../functions/shared/lifecycle.js';
import { getJobWithImages } from '../../functions/shared/jobs-repo.js';
import { checkBudget } from '../../functions/pipeline/anonymize.js';
import { InputError } from '../../functions/pipeline/types.js';
import type { ResourceLimits } from '../../functions/shared/limits.js';

const CAP = 5;
let stack: LocalStack;
let photo: Buffer;

beforeAll(async () => {
  // No worker: admitted images stay queued, so the count only moves when the test moves it.
  stack = await startLocalStack({ port: 0, webPage: false, env: { MAX_IN_FLIGHT_IMAGES: String(CAP) } });
  photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#a86' } })
    .jpeg()
    .toBuffer();
});

afterAll(async () => {
  await stack?.stop();
});

/** A Lambda-like instance: its own SDK clients and app, same tables. */
function instance(limits: Partial<ResourceLimits> = {}) {
  const base = createContext('api-instance');
  const ctx: ServiceContext = { ...base, cfg: { ...base.cfg, limits: { ...base.cfg.limits, ...limits } } };
  return { ctx, app: createApp(ctx) };
}

async function post(app: ReturnType<typeof createApp>, key: string, images = 1, options?: unknown) {
  const form = new FormData();
  for (let i = 0; i < images; i++) form.append('image', new Blob([photo], { type: 'image/jpeg' }), 'p.jpg');
  if (options) form.append('options', JSON.stringify(options));
  const res = await app.request('/v1/jobs', {
    method: 'POST',
    body: form,
    headers: { authorization: `Bearer ${key}` },
  });
  return { status: res.status, headers: res.headers, data: (await res.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

describe('in-flight cap per tenant', () => {
  it('two concurrent instances on one table cannot exceed the cap; terminal images and erasure give slots back', async () => {
    const { apiKey } = await stack.createKey('burst');
    const [i1, i2] = [instance(), instance()];
    expect(i1.ctx.clients.ddb).not.toBe(i2.ctx.clients.ddb);
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, n) => post((n % 2 ? i1 : i2).app, apiKey)),
    );
    const accepted = results.filter((r) => r.status === 202);
    const refused = results.filter((r) => r.status === 429);
    expect(accepted).toHaveLength(CAP);
    expect(refused).toHaveLength(16 - CAP);
    expect(await inFlightImages(i1.ctx, 'burst')).toBe(CAP);
    for (const r of refused) {
      expect(r.headers.get('content-type')).toBe('application/problem+json');
      expect(r.headers.get('retry-after')).toBe('30');
      expect(r.data).toMatchObject({
        type: 'https://falco.dev/problems/too-many-images-in-flight',
        limit: 'maxInFlightImages',
        max: CAP,
        value: CAP,
      });
      expect(r.data.detail).toMatch(
        /may have 5 images queued or processing at once; 5 are, and this job adds 1/,
      );
    }
    // A job that would cross the cap is refused whole, even with room for part of it.
    expect((await post(i1.app, apiKey, 2)).status).toBe(429);

    // An image failing (here the DLQ path) gives its slot back exactly once, however often it is replayed.
    const first = await getJobWithImages(stack.ctx, accepted[0].data.id);
    const img = first!.images[0];
    for (let k = 0; k < 3; k++) await failImage(stack.ctx, img, 'processing-failed', 'test');
    expect(await inFlightImages(i1.ctx, 'burst')).toBe(CAP - 1);
    expect((await post(i2.app, apiKey)).status).toBe(202);
    expect((await post(i1.app, apiKey)).status).toBe(429);

    // Erasing a job with a queued image gives its slot back.
    const del = await i1.app.request(`/v1/jobs/${accepted[1].data.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(del.status).toBe(204);
    expect(await inFlightImages(i1.ctx, 'burst')).toBe(CAP - 1);
    // Another tenant is not affected.
    expect((await post(i1.app, stack.apiKey)).status).toBe(202);
  });
});

describe('job creation rate, shared by every instance', () => {
  it('the per-minute limit holds across instances and says which limit, the value and when to retry', async () => {
    const { apiKey } = await stack.createKey('rate');
    const [i1, i2] = [instance({ jobsPerMinute: 3 }), instance({ jobsPerMinute: 3 })];
    // Pin the clock mid-minute so the window cannot roll over during the test.
    const t = Math.floor(Date.now() / 60_000) * 60_000 + 30_000;
    i1.ctx.now = i2.ctx.now = () => t;
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, n) => post((n % 2 ? i1 : i2).app, apiKey)),
    );
    expect(results.map((r) => r.status).sort()).toEqual([202, 202, 202, 429, 429, 429]);
    const r = results.find((x) => x.status === 429)!;
    expect(r.headers.get('retry-after')).toBe('30');
    expect(r.data).toMatchObject({
      type: 'https://falco.dev/problems/job-rate-limited',
      limit: 'jobsPerMinute',
      max: 3,
      value: 3,
    });
    expect(r.data.detail).toBe(
      'this tenant may create 3 jobs per minute and has created 3 in the current minute; retry after 30 s',
    );
    i1.ctx.now = () => t + 60_000; // next window
    expect((await post(i1.app, apiKey)).status).toBe(202);
  });
});

describe('compute budget per image (faces × steps × attempts)', () => {
  it('is checked at job creation for one face', async () => {
    const { app } = instance({ maxComputeSteps: 600 });
    const ok = await post(app, stack.apiKey, 1, { steps: 200 });
    expect(ok.status).toBe(202);
    const r = await post(app, stack.apiKey, 1, { steps: 201 });
    expect(r.status).toBe(422);
    expect(r.data).toMatchObject({
      type: 'https://falco.dev/problems/compute-budget-exceeded',
      limit: 'maxComputeSteps',
      value: 603,
      max: 600,
    });
    expect(r.data.detail).toBe(
      'one face would need up to 603 optimisation steps (201 steps × 3 attempts); the compute budget per image is 600 steps',
    );
  });

  it('is enforced by the pipeline once faces are counted (the worker passes its limits)', () => {
    const budget = { maxFaces: 4, maxComputeSteps: 600 };
    expect(() => checkBudget(4, 50, 3, budget)).not.toThrow();
    const many = (() => {
      try {
        checkBudget(5, 1, 1, budget);
      } catch (e) {
        return e as InputError;
      }
    })();
    expect(many).toBeInstanceOf(InputError);
    expect([many!.code, many!.message]).toEqual([
      'too-many-faces',
      'more than 4 faces found; an image may hold at most 4',
    ]);
    expect(() => checkBudget(3, 100, 3, budget)).toThrow(
      '3 faces × 100 steps × 3 attempts = 900 optimisation steps exceeds the compute budget of 600 per image',
    );
  });
});

describe('limits are published', () => {
  it('the OpenAPI document carries the enforced limits and the option ranges', async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const doc = (await (await fetch(stack.url + '/openapi.json')).json()) as any;
    expect(doc['x-limits']).toMatchObject({
      maxInFlightImages: CAP,
      maxPixels: 40_000_000,
      maxSide: 16_384,
      maxImagesPerJob: 20,
      options: { steps: { min: 1, max: 500 }, seed: { min: 0, max: 2 ** 32 - 1 } },
    });
    const steps = doc.components.schemas.Options.properties.steps;
    expect([steps.minimum, steps.maximum]).toEqual([1, 500]);
    expect(doc.components.schemas.Options.properties.onResidual.enum).toEqual(['anonymize', 'fail']);
  });
});
