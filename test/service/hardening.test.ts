/**
 * Issue #11 on the local stack (production handlers, stand-in engine): ids checked against their exact formats
 * on every route (traversal, encoded, absolute, very long), the cross-tenant upload theft, the decode policy
 * (raised SOF header, header limits worded with the real numbers, per-request error messages under
 * concurrency), duplicated multipart fields.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';
import { jobPk, tenantGsi } from '../../functions/shared/records.js';
import {
  api,
  damage,
  listKeys,
  pngHeaderOnly,
  raiseSof,
  SAMPLE,
  SAMPLE2,
  truncatedJpeg,
  waitFor,
} from './helpers.js';

let stack: LocalStack;
let a: ReturnType<typeof api>;
let b: ReturnType<typeof api>;

beforeAll(async () => {
  stack = await startLocalStack({ port: 0, anonymizer: createStandInAnonymizer(), webPage: false });
  a = api(stack);
  b = api(stack, (await stack.createKey('tenant-b')).apiKey);
});

afterAll(async () => {
  await stack?.stop();
});

/** Every answer to a hostile request: a 4xx problem+json with a detail, never a 5xx. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function expectProblem(r: { status: number; headers: Headers; data: any }, status: number, what: string) {
  expect(r.status, what).toBe(status);
  expect(r.headers.get('content-type'), what).toBe('application/problem+json');
  expect(typeof r.data.detail, what).toBe('string');
  expect(r.data.type, what).toMatch(/^https:\/\/falco\.dev\/problems\/[a-z0-9]+(-[a-z0-9]+)*$/);
}

async function upload(client: ReturnType<typeof api>, bytes: Buffer): Promise<string> {
  const up = await client.call('POST', '/v1/uploads', {
    json: { contentType: 'image/jpeg', bytes: bytes.length },
  });
  expect(up.status).toBe(201);
  const form = new FormData();
  for (const [k, v] of Object.entries(up.data.fields as Record<string, string>)) form.append(k, v);
  form.append('file', new Blob([bytes], { type: 'image/jpeg' }), 'photo.jpg');
  expect((await fetch(up.data.url, { method: 'POST', body: form })).status).toBeLessThan(300);
  return up.data.id;
}

describe('tenant isolation: ids are checked against their exact format before any key is built', () => {
  it("tenant B cannot take tenant A's upload (../<tenantA>/<uploadId> and every variant); A's job then works", async () => {
    const id = await upload(a, SAMPLE2);
    const hostile = [
      `../demo/${id}`,
      `..%2Fdemo%2F${id}`,
      `%2E%2E%2Fdemo%2F${id}`,
      `..\\demo\\${id}`,
      `/uploads/demo/${id}`,
      `uploads/demo/${id}`,
      `${id}/../../demo/${id}`,
      `./${id}`,
      `${id}\u0000`,
      `${id} `,
      id.toLowerCase(),
      'upl_' + 'A'.repeat(4996),
      'A'.repeat(5000),
      '',
    ];
    for (const uploadId of hostile) {
      const r = await b.call('POST', '/v1/jobs', { json: { images: [{ uploadId }] } });
      expectProblem(r, 400, uploadId.slice(0, 40));
      expect(r.data.type).toBe('https://falco.dev/problems/invalid-id');
      expect(r.data.detail).toContain('images.0.uploadId');
      expect(r.data.detail.length).toBeLessThan(400); // the 5000-character value is not echoed
    }
    // A's exact id, from B: looked up under B's own prefix only → not found.
    const direct = await b.call('POST', '/v1/jobs', { json: { images: [{ uploadId: id }] } });
    expectProblem(direct, 404, 'direct');
    expect(direct.data.type).toBe('https://falco.dev/problems/upload-not-found');
    expect((await b.call('GET', '/v1/jobs')).data.data).toEqual([]);
    // The upload is untouched, and A's own job on it runs to completion.
    expect(await listKeys(stack, stack.ctx.cfg.uploadsBucket, `uploads/demo/${id}`)).toEqual([
      `uploads/demo/${id}`,
    ]);
    const job = await a.call('POST', '/v1/jobs', {
      json: { images: [{ uploadId: id }], options: { steps: 1 } },
    });
    expect(job.status).toBe(202);
    const done = await waitFor('A job done', async () => {
      const r = await a.call('GET', `/v1/jobs/${job.data.id}`);
      return r.data.status === 'completed' ? r.data : null;
    });
    expect(done.images[0].input).toMatchObject({ width: 1920, height: 1367 });
  });

  it('job ids in the path: traversal, encoded, absolute and very long → 404 problem+json, never echoed', async () => {
    const own = await a.postImages([{ bytes: SAMPLE }], { options: { steps: 1 } });
    expect(own.status).toBe(202);
    const id: string = own.data.id;
    const hostile = [
      `..%2F..%2Fv1%2Fusage`,
      `${id}%2F..%2F${id}`,
      `%2E%2E`,
      `${id}%00`,
      `${id}.json`,
      id.toLowerCase(),
      `job_${'A'.repeat(4996)}`,
      'x'.repeat(5000),
      encodeURIComponent(`/etc/passwd`),
      encodeURIComponent(`JOB#${id}`),
    ];
    for (const p of hostile)
      for (const method of ['GET', 'DELETE']) {
        const r = await b.call(method, `/v1/jobs/${p}`);
        expectProblem(r, 404, `${method} ${p.slice(0, 40)}`);
        expect(r.data.detail.length).toBeLessThan(200);
      }
    // The real id from another tenant: indistinguishable from none.
    expectProblem(await b.call('GET', `/v1/jobs/${id}`), 404, 'cross-tenant GET');
    expectProblem(await b.call('DELETE', `/v1/jobs/${id}`), 404, 'cross-tenant DELETE');
    expect((await a.call('GET', `/v1/jobs/${id}`)).status).toBe(200);
  });

  it('cursors: every part checked (forged key parts, another tenant, very long) → 400', async () => {
    const forge = (key: unknown) => Buffer.from(JSON.stringify(key)).toString('base64url');
    const good = {
      gsi1pk: tenantGsi('tenant-b'),
      gsi1sk: 'job_01JD2S5X7Z9QK3M4N5P6R7S8T9',
      pk: jobPk('job_01JD2S5X7Z9QK3M4N5P6R7S8T9'),
      sk: 'JOB',
    };
    expect((await b.call('GET', `/v1/jobs?cursor=${forge(good)}`)).status).toBe(200);
    const cursors = [
      forge({ ...good, gsi1sk: '../demo', pk: 'JOB#../demo' }),
      forge({ ...good, pk: jobPk('job_01JD2S5X7Z9QK3M4N5P6R7S8T8') }),
      forge({ ...good, gsi1pk: tenantGsi('demo') }),
      forge({ ...good, gsi1sk: 'A'.repeat(3000) }),
      forge([good]),
      forge(null),
      'not base64 at all!',
      'A'.repeat(5000),
    ];
    for (const c of cursors)
      expectProblem(await b.call('GET', `/v1/jobs?cursor=${encodeURIComponent(c)}`), 400, c.slice(0, 40));
  });

  it('idempotency keys, usage months and limits in the query are format-checked too', async () => {
    for (const key of ['k'.repeat(256), 'k'.repeat(5000), 'with space', 'caf\u00e9'])
      expectProblem(
        await a.postImages([{ bytes: SAMPLE }], { headers: { 'idempotency-key': key } }),
        400,
        `idempotency ${key.slice(0, 20)}`,
      );
    for (const month of ['../2026-11', '2026-13', '2026-11%2F..', 'x'.repeat(5000)])
      expectProblem(await a.call('GET', `/v1/usage?month=${month}`), 400, `month ${month.slice(0, 20)}`);
    expectProblem(await a.call('GET', '/v1/jobs?limit=99999999999999999999'), 400, 'limit');
  });
});

describe('one decode policy (pipeline/image-io) at the API', () => {
  it('a JPEG whose SOF header was raised to 6000×6000 over 1920×1280 of data is refused', async () => {
    const r = await a.postImages([{ bytes: raiseSof(SAMPLE, 6000, 6000), name: 'raised.jpg' }]);
    expectProblem(r, 422, 'raised SOF');
    expect(r.data.type).toBe('https://falco.dev/problems/corrupt-image');
    expect(r.data.detail).toBe(
      'image 1 (raised.jpg): the JPEG pixel data is corrupt, or shorter than the 6000×6000 its header declares',
    );
  });

  it('header limits are worded with the real numbers, precisely', async () => {
    const cases: Array<[Buffer, string]> = [
      [pngHeaderOnly(60000, 60000), 'image 1 (blob): 60000×60000 = 3600.0 MP exceeds the 40.0 MP limit'],
      [pngHeaderOnly(40001, 1000), 'image 1 (blob): 40001×1000 = 40.001 MP exceeds the 40.000 MP limit'],
      [
        pngHeaderOnly(20000, 1000),
        'image 1 (blob): 20000×1000: the longest side, 20000 px, exceeds the 16384 px limit',
      ],
    ];
    for (const [bytes, detail] of cases) {
      const form = new FormData();
      form.append('image', new Blob([bytes], { type: 'image/png' }));
      const r = await a.call('POST', '/v1/jobs', { body: form });
      expectProblem(r, 422, detail);
      expect(r.data.detail).toBe(detail);
      expect(r.data.type).toBe('https://falco.dev/problems/too-many-pixels');
    }
  });

  it('concurrent corrupt requests each get their own format’s message, never libvips text', async () => {
    const webp = await sharp(SAMPLE).resize(640).webp({ quality: 80 }).toBuffer();
    const png = await sharp(SAMPLE).resize(320).png().toBuffer();
    const kinds: Array<[string, Buffer, RegExp]> = [
      [
        'JPEG',
        truncatedJpeg(),
        /^image 1 \(blob\): the JPEG file is truncated: it ends before the end of its image data$/,
      ],
      [
        'JPEG',
        raiseSof(SAMPLE, 4000, 4000),
        /^image 1 \(blob\): the JPEG pixel data is corrupt, or shorter than the 4000×4000/,
      ],
      [
        'WebP',
        damage(webp, 20 / webp.length, 16),
        /^image 1 \(blob\): the WebP header is corrupt and cannot be read$/,
      ],
      [
        'WebP',
        webp.subarray(0, Math.floor(webp.length * 0.7)),
        /^image 1 \(blob\): the WebP file is truncated/,
      ],
      ['PNG', damage(png, 0.5, 64), /^image 1 \(blob\): the PNG pixel data is corrupt/],
      ['PNG', png.subarray(0, Math.floor(png.length * 0.6)), /^image 1 \(blob\): the PNG file is truncated/],
    ];
    const all = Array.from({ length: 4 }, () => kinds).flat();
    const results = await Promise.all(
      all.map(async ([label, bytes]) => {
        const form = new FormData();
        form.append('image', new Blob([bytes]));
        return { label, r: await a.call('POST', '/v1/jobs', { body: form }) };
      }),
    );
    for (const [n, { label, r }] of results.entries()) {
      expectProblem(r, 422, `${n} ${label}`);
      expect(r.data.detail, `${n} ${label}`).toMatch(all[n][2]);
      expect(r.data.detail.replace('(blob)', '')).not.toMatch(
        /vips|unknown error|\(|jpeg.*webp|webp.*jpeg|png.*jpeg/i,
      );
    }
  });

  it('a duplicated multipart options (or webhook) field gets a precise error', async () => {
    const form = new FormData();
    form.append('image', new Blob([SAMPLE]));
    form.append('options', '{"steps":2}');
    form.append('options', '{"steps":3}');
    const r = await a.call('POST', '/v1/jobs', { body: form });
    expectProblem(r, 422, 'options twice');
    expect(r.data.detail).toBe('the multipart field "options" was sent 2 times; send it once');
    const f2 = new FormData();
    f2.append('image', new Blob([SAMPLE]));
    f2.append('options', new Blob(['{}']), 'options.json');
    expect((await a.call('POST', '/v1/jobs', { body: f2 })).data.detail).toBe(
      'the multipart field "options" must be a text field, not a file',
    );
  });
});
