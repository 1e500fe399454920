/**
 * End-to-end on the embedded stack (s3rver + local-aws-sqs + dynalite, production handlers) with the test
 * stand-in engine: API → SQS → worker → S3 result → completion → usage → signed webhook.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { Webhook } from 'standardwebhooks';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';
import { listUsage } from '../../functions/shared/usage-repo.js';
import { createApp } from '../../functions/api/app.js';
import {
  api,
  listKeys,
  pngBomb,
  SAMPLE,
  SAMPLE2,
  startReceiver,
  textFile,
  truncatedJpeg,
  waitFor,
  wrongMagic,
  type Receiver,
} from './helpers.js';

const PRIVACY_FAIL_SEED = 666;
const CRASH_SEED = 777;

let stack: LocalStack;
let hook: Receiver;
let client: ReturnType<typeof api>;

beforeAll(async () => {
  stack = await startLocalStack({
    port: 0,
    anonymizer: createStandInAnonymizer({ privacyFailSeed: PRIVACY_FAIL_SEED, crashSeed: CRASH_SEED }),
    worker: { visibilityTimeout: 2, heartbeatInterval: 1 },
    maxReceiveCount: 2,
    env: { WEBHOOK_RETRY_BASE_SECONDS: '1' },
    webPage: false,
  });
  client = api(stack);
  hook = await startReceiver();
});

afterAll(async () => {
  await hook?.close();
  await stack?.stop();
});

const month = () => new Date().toISOString().slice(0, 7);

async function waitJob(id: string, key = stack.apiKey) {
  return waitFor(`job ${id} to finish`, async () => {
    const r = await api(stack, key).call('GET', `/v1/jobs/${id}`);
    return r.data?.status === 'completed' || r.data?.status === 'failed' ? r.data : null;
  });
}

describe('happy path', () => {
  it('anonymizes a real photo, bills it once, and delivers a signed webhook (after one failed attempt)', async () => {
    hook.script = [500]; // first delivery fails → retried with backoff
    const created = await client.postImages([{ bytes: SAMPLE, name: 'sample1.jpg' }], {
      options: { steps: 3, seed: 1, format: 'png' },
      webhook: hook.url,
    });
    expect(created.status).toBe(202);
    expect(created.headers.get('location')).toBe(`/v1/jobs/${created.data.id}`);
    expect(created.data).toMatchObject({
      object: 'job',
      status: 'queued',
      counts: { total: 1, queued: 1 },
      options: { steps: 3, seed: 1, format: 'png' },
    });
    expect(created.data.images[0]).toMatchObject({
      status: 'queued',
      filename: 'sample1.jpg',
      input: { format: 'jpeg', width: 1920, height: 1280, bytes: SAMPLE.length },
    });

    const job = await waitJob(created.data.id);
    expect(job.status).toBe('completed');
    expect(job.counts).toEqual({ total: 1, queued: 0, processing: 0, done: 1, failed: 0 });
    expect(job.progress).toBe(1);
    const img = job.images[0];
    expect(img.status).toBe('done');
    expect(img.error).toBeNull();
    expect(img.result.contentType).toBe('image/png');
    expect(Date.parse(img.result.expiresAt)).toBeGreaterThan(Date.now());
    expect(img.report).toMatchObject({
      width: 1920,
      height: 1280,
      format: 'png',
      outcome: 'ok',
      faces: [{ index: 0, reidentified: false }],
    });
    expect(img.report.faces[0].losses).toHaveLength(3);

    // The presigned result URL serves the anonymized image: same size, different pixels.
    const out = Buffer.from(await (await fetch(img.result.url)).arrayBuffer());
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1920, 1280]);
    const a = await sharp(SAMPLE).resize(32, 32).raw().toBuffer();
    const b = await sharp(out).removeAlpha().resize(32, 32).raw().toBuffer();
    expect(a.equals(b)).toBe(false);
    const report = (await (await fetch(img.reportUrl)).json()) as { faces: unknown[] };
    expect(report.faces).toHaveLength(1);

    // Privacy: the original is deleted once processed.
    expect(await listKeys(stack, stack.ctx.cfg.uploadsBucket, `inputs/demo/${job.id}/`)).toEqual([]);

    // Usage: exactly one billed image, recorded once.
    const usage = await client.call('GET', `/v1/usage?month=${month()}`);
    expect(usage.status).toBe(200);
    const records = await listUsage(stack.ctx, 'demo', month());
    expect(records.filter((r) => r.jobId === job.id).map((r) => r.imageId)).toEqual([img.id]);
    expect(usage.data.billableImages).toBe(records.length);

    // Webhook: second attempt succeeds; signature verifies with the tenant secret.
    const deliveries = await waitFor(
      'webhook delivered',
      async () => (hook.received.length >= 2 ? hook.received : null),
      20_000,
    );
    // The receiver has the body before the handler records the outcome: wait for the record, not just the POST.
    const jobFinal = await waitFor('webhook recorded as delivered', async () => {
      const j = (await client.call('GET', `/v1/jobs/${job.id}`)).data;
      return j.webhook?.status === 'delivered' ? j : null;
    });
    expect(jobFinal.webhook).toEqual({ url: hook.url, status: 'delivered', attempts: 2 });
    const last = deliveries[deliveries.length - 1];
    expect(last.headers['webhook-id']).toBe(`msg_${job.id}`);
    expect(deliveries[0].headers['webhook-id']).toBe(`msg_${job.id}`);
    const payload = new Webhook(stack.webhookSecret).verify(last.body, last.headers) as {
      type: string;
      data: { id: string; counts: { done: number } };
    };
    expect(payload.type).toBe('job.completed');
    expect(payload.data.id).toBe(job.id);
    expect(payload.data.counts.done).toBe(1);
    // A wrong secret must not verify.
    expect(() =>
      new Webhook('whsec_' + Buffer.alloc(32, 7).toString('base64')).verify(last.body, last.headers),
    ).toThrow();
  });

  it('accepts a presigned upload and honours Idempotency-Key', async () => {
    const up = await client.call('POST', '/v1/uploads', {
      json: { contentType: 'image/jpeg', bytes: SAMPLE2.length },
    });
    expect(up.status).toBe(201);
    expect(up.data.id).toMatch(/^upl_/);
    const form = new FormData();
    for (const [k, v] of Object.entries(up.data.fields as Record<string, string>)) form.append(k, v);
    form.append('file', new Blob([SAMPLE2], { type: 'image/jpeg' }), 'sample2.jpg');
    const put = await fetch(up.data.url, { method: 'POST', body: form });
    expect(put.status).toBeLessThan(300);

    const body = { images: [{ uploadId: up.data.id }], options: { steps: 2 } };
    const headers = { 'idempotency-key': 'order-42' };
    const first = await client.call('POST', '/v1/jobs', { json: body, headers });
    expect(first.status).toBe(202);
    const again = await client.call('POST', '/v1/jobs', { json: body, headers });
    expect(again.status).toBe(202);
    expect(again.data.id).toBe(first.data.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const conflict = await client.call('POST', '/v1/jobs', {
      json: { ...body, options: { steps: 3 } },
      headers,
    });
    expect(conflict.status).toBe(409);
    expect(conflict.headers.get('content-type')).toContain('application/problem+json');
    expect(conflict.data.detail).toMatch(/different request body/);

    // The upload was consumed: a second job cannot reuse it.
    const reuse = await client.call('POST', '/v1/jobs', { json: body });
    expect(reuse.status).toBe(404);
    expect(reuse.data.detail).toContain(up.data.id);

    const job = await waitJob(first.data.id);
    expect(job.status).toBe('completed');
    expect(job.images[0].input).toMatchObject({
      width: 1920,
      height: 1367,
      format: 'jpeg',
      bytes: SAMPLE2.length,
    });
  });
});

describe('failures are not billed', () => {
  it('a face that stays re-identifiable fails the image and the job (job.failed webhook)', async () => {
    const before = (await listUsage(stack.ctx, 'demo', month())).length;
    const n = hook.received.length;
    const created = await client.postImages([{ bytes: SAMPLE }], {
      options: { seed: PRIVACY_FAIL_SEED, steps: 1 },
      webhook: hook.url,
    });
    const job = await waitJob(created.data.id);
    expect(job.status).toBe('failed');
    expect(job.images[0].status).toBe('failed');
    expect(job.images[0].error.code).toBe('privacy-check-failed');
    expect(job.images[0].result).toBeNull();
    expect((await listUsage(stack.ctx, 'demo', month())).length).toBe(before);
    const d = await waitFor('job.failed webhook', async () =>
      hook.received.length > n ? hook.received[n] : null,
    );
    expect((new Webhook(stack.webhookSecret).verify(d.body, d.headers) as { type: string }).type).toBe(
      'job.failed',
    );
  });

  it('an engine crash is retried, then dead-lettered: image failed, not billed', async () => {
    const before = (await listUsage(stack.ctx, 'demo', month())).length;
    const created = await client.postImages([{ bytes: SAMPLE }], { options: { seed: CRASH_SEED, steps: 1 } });
    const job = await waitJob(created.data.id);
    expect(job.status).toBe('failed');
    expect(job.images[0].error).toEqual({
      code: 'processing-failed',
      detail: 'processing failed after repeated attempts; the image was not billed',
    });
    expect((await listUsage(stack.ctx, 'demo', month())).length).toBe(before);
  });
});

describe('bad uploads', () => {
  const cases: Array<[string, number, () => Buffer, RegExp]> = [
    ['truncated JPEG', 422, truncatedJpeg, /the JPEG file is truncated/],
    ['wrong magic bytes', 415, wrongMagic, /unknown binary data; only JPEG, PNG and WebP/],
    ['100-megapixel PNG bomb', 422, pngBomb, /10000×10000 = 100\.0 MP exceeds the 40\.0 MP limit/],
    ['0 bytes', 422, () => Buffer.alloc(0), /is empty \(0 bytes\)/],
    ['text file', 415, textFile, /looks like text/],
  ];
  it.each(cases)('%s → %s problem+json, nothing stored or queued', async (_name, status, make, detail) => {
    const jobsBefore = (await client.call('GET', '/v1/jobs?limit=100')).data.data.length;
    const inputsBefore = await listKeys(stack, stack.ctx.cfg.uploadsBucket, 'inputs/');
    const res = await client.postImages([{ bytes: make(), name: 'bad.jpg' }]);
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.data).toMatchObject({
      status,
      type: expect.stringMatching(/^https:\/\/falco\.dev\/problems\//),
      instance: '/v1/jobs',
    });
    expect(res.data.detail).toMatch(detail);
    expect((await client.call('GET', '/v1/jobs?limit=100')).data.data.length).toBe(jobsBefore);
    expect(await listKeys(stack, stack.ctx.cfg.uploadsBucket, 'inputs/')).toEqual(inputsBefore);
    const attrs = await stack.ctx.clients.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: stack.ctx.cfg.jobsQueueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    expect(
      Number(attrs.Attributes!.ApproximateNumberOfMessages) +
        Number(attrs.Attributes!.ApproximateNumberOfMessagesNotVisible),
    ).toBe(0);
  });

  it('rejects invalid options, webhooks aimed at private addresses, and missing auth precisely', async () => {
    const bad = await client.postImages([{ bytes: SAMPLE }], { options: { steps: 0, layers: [8, 3] } });
    expect(bad.status).toBe(422);
    expect(bad.data.errors.map((e: { path: string }) => e.path)).toEqual(['options.steps', 'options.layers']);
    const meta = await client.postImages([{ bytes: SAMPLE }], {
      webhook: 'http://169.254.169.254/latest/meta-data',
    });
    expect(meta.status).toBe(422);
    expect(meta.data.detail).toMatch(/link-local/);
    const priv = await client.postImages([{ bytes: SAMPLE }], { webhook: 'http://10.1.2.3/hook' });
    expect(priv.data.detail).toMatch(/private/);
    const noAuth = await fetch(stack.url + '/v1/jobs');
    expect(noAuth.status).toBe(401);
    expect(noAuth.headers.get('www-authenticate')).toContain('Bearer');
    const wrongKey = await api(stack, 'fk_local_' + 'A'.repeat(43)).call('GET', '/v1/jobs');
    expect(wrongKey.status).toBe(401);
    expect(wrongKey.data.detail).toBe('unknown or revoked API key');
  });
});

describe('tenancy, listing, erasure', () => {
  it("another tenant's key gets 404 on every job route", async () => {
    const created = await client.postImages([{ bytes: SAMPLE }], { options: { steps: 1 } });
    const id = created.data.id;
    const other = api(stack, (await stack.createKey('acme')).apiKey);
    for (const [method, path] of [
      ['GET', `/v1/jobs/${id}`],
      ['DELETE', `/v1/jobs/${id}`],
    ]) {
      const r = await other.call(method, path);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.data.detail).toBe(`job ${id} not found`);
    }
    expect((await other.call('GET', '/v1/jobs')).data.data).toEqual([]);
    expect((await other.call('GET', `/v1/usage?month=${month()}`)).data.billableImages).toBe(0);
    // A cursor forged from another tenant's listing is refused.
    const page = await client.call('GET', '/v1/jobs?limit=1');
    expect(page.data.nextCursor).toBeTruthy();
    expect((await other.call('GET', `/v1/jobs?cursor=${page.data.nextCursor}`)).status).toBe(400);
    await waitJob(id);
  });

  it('paginates newest first with a cursor', async () => {
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const r: { data: { data: Array<{ id: string }>; nextCursor: string | null } } = await client.call(
        'GET',
        `/v1/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(r.data.data.length).toBeLessThanOrEqual(2);
      all.push(...r.data.data.map((j) => j.id));
      cursor = r.data.nextCursor;
    } while (cursor);
    expect(all.length).toBeGreaterThanOrEqual(5);
    expect(new Set(all).size).toBe(all.length);
    expect([...all].sort().reverse()).toEqual(all);
  });

  it('DELETE erases inputs, results and reports now', async () => {
    const created = await client.postImages([{ bytes: SAMPLE }], { options: { steps: 1 } });
    const job = await waitJob(created.data.id);
    expect(await listKeys(stack, stack.ctx.cfg.resultsBucket, `results/demo/${job.id}/`)).toHaveLength(1);
    const del = await client.call('DELETE', `/v1/jobs/${job.id}`);
    expect(del.status).toBe(204);
    expect(await listKeys(stack, stack.ctx.cfg.resultsBucket, `results/demo/${job.id}/`)).toEqual([]);
    expect(await listKeys(stack, stack.ctx.cfg.resultsBucket, `reports/demo/${job.id}/`)).toEqual([]);
    expect(await listKeys(stack, stack.ctx.cfg.uploadsBucket, `inputs/demo/${job.id}/`)).toEqual([]);
    expect((await client.call('GET', `/v1/jobs/${job.id}`)).status).toBe(404);
  });
});

describe('API surface', () => {
  it('rate limits per key with 429 + Retry-After', async () => {
    const app = createApp({
      ...stack.ctx,
      cfg: { ...stack.ctx.cfg, rateLimit: { ratePerSecond: 0.5, burst: 2 } },
    });
    const headers = { authorization: `Bearer ${stack.apiKey}` };
    const codes = [];
    let last: Response | undefined;
    for (let i = 0; i < 3; i++) {
      last = await app.request('/v1/usage', { headers });
      codes.push(last.status);
    }
    expect(codes).toEqual([200, 200, 429]);
    expect(last!.headers.get('retry-after')).toBe('2');
    expect(last!.headers.get('content-type')).toBe('application/problem+json');
  });

  it('serves a generated OpenAPI document and an offline reference page', async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const doc = (await (await fetch(stack.url + '/openapi.json')).json()) as any;
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths).sort()).toEqual(['/v1/jobs', '/v1/jobs/{id}', '/v1/uploads', '/v1/usage']);
    expect(Object.keys(doc.paths['/v1/jobs'].post.requestBody.content)).toEqual([
      'application/json',
      'multipart/form-data',
    ]);
    expect(doc.components.schemas.Job.properties.images).toBeTruthy();
    // The per-face utility check (issue #10) is documented: both sides and the change.
    const attrs = doc.components.schemas.FaceReport.properties.attributes;
    expect(Object.keys(attrs.properties).sort()).toEqual(['anonymized', 'change', 'original']);
    expect(Object.keys(doc.components.schemas.AttributeChange.properties).sort()).toEqual([
      'ageDelta',
      'expressionKept',
      'genderKept',
      'poseDeltaDeg',
    ]);
    expect(doc.components.schemas.FaceAttributes.properties.expressions).toBeTruthy();
    expect(doc.components.securitySchemes.bearer).toEqual(
      expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    );
    const html = await (await fetch(stack.url + '/docs')).text();
    expect(html).toContain('/v1/jobs/{id}');
    expect(html).not.toContain('<script');
  });
});
