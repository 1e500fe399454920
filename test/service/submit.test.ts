/**
 * `submit` and the typed client against the local stack: a folder of sample photos (plus a file that is
 * no image and a truncated JPEG) sent in jobs smaller than asked (the API announces its limit), the
 * run interrupted after the first download and resumed, every result downloaded exactly once, written
 * next to its input, failures explained, cost summed. The client's operations are held against the
 * served OpenAPI document.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';
import { ApiError, FalcoClient, OPERATIONS } from '../../functions/client/index.js';
import { JOURNAL, describeSummary, runSubmit, type SubmitEvent } from '../../functions/cli/submit.js';
import { SAMPLE, truncatedJpeg } from './helpers.js';

const SAMPLES = new URL('../../node_modules/@vladmandic/face-api/demo/', import.meta.url).pathname;

let stack: LocalStack;
let root: string;
const photos = ['a/sample1.jpg', 'a/sample2.jpg', 'sample3.jpg', 'sample4.jpg', 'sub/deeper/sample5.jpg'];

beforeAll(async () => {
  stack = await startLocalStack({
    port: 0,
    webPage: false,
    anonymizer: createStandInAnonymizer({ stepMs: 20 }),
    // Smaller than the client's --per-job, so the client has to follow the API's announced limit.
    env: { MAX_IMAGES_PER_JOB: '2', RATE_LIMIT_RPS: '1000', RATE_LIMIT_BURST: '1000' },
  });
  root = await mkdtemp(join(tmpdir(), 'falco-submit-'));
  for (const p of photos) {
    await mkdir(join(root, p, '..'), { recursive: true });
    await writeFile(join(root, p), await readFile(join(SAMPLES, p.split('/').pop()!)));
  }
  await writeFile(join(root, 'notes.jpg'), 'this is text, not a photo');
  await writeFile(join(root, 'cut.jpg'), truncatedJpeg());
});
afterAll(async () => {
  await stack?.stop();
  await rm(root, { recursive: true, force: true });
});

/** A fetch that counts requests by method and path (result downloads by S3 key). */
function countingFetch() {
  const counts = new Map<string, number>();
  const f: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const k = `${(init?.method ?? 'GET').toUpperCase()} ${url.pathname}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    return fetch(input, init);
  };
  const sum = (re: RegExp) => [...counts].filter(([k]) => re.test(k)).reduce((s, [, n]) => s + n, 0);
  return { f, counts, sum };
}

describe('typed client', () => {
  it('calls only operations of the served OpenAPI document', async () => {
    const doc = (await (await fetch(`${stack.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    for (const [name, op] of Object.entries(OPERATIONS))
      expect(doc.paths[op.path]?.[op.method], `${name}: ${op.method} ${op.path}`).toBeTruthy();
  });

  it('turns problem+json into ApiError with the slug, and rejects a bad key', async () => {
    const client = new FalcoClient({ baseUrl: stack.url, apiKey: stack.apiKey });
    const err = await client.getJob('job_nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 404, code: 'not-found' });
    const bad = new FalcoClient({ baseUrl: stack.url, apiKey: 'fk_live_wrong' });
    await expect(bad.getUsage()).rejects.toMatchObject({ status: 401 });
    expect(() => new FalcoClient({ baseUrl: 'not a url', apiKey: 'x' })).toThrow(/not a URL/);
    // The deployment's limits, as published in the document (this stack: 2 images per job).
    expect((await client.getLimits())?.['maxImagesPerJob']).toBe(2);
  });
});

describe('submit <dir>', () => {
  it('is interrupted, resumes, and downloads every result exactly once', async () => {
    const events: SubmitEvent[] = [];
    const first = countingFetch();
    const ac = new AbortController();
    const common = {
      dir: root,
      api: stack.url,
      key: stack.apiKey,
      options: { steps: 3 },
      perJob: 3,
      concurrency: 2,
      jobs: 2,
      pollMs: 100,
      progress: false,
      log: () => {},
    };
    await expect(
      runSubmit({
        ...common,
        fetch: first.f,
        signal: ac.signal,
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'downloaded') ac.abort(new Error('interrupted by the test'));
        },
      }),
    ).rejects.toThrow(/interrupted by the test/);
    const downloadedFirst = events.filter((e) => e.type === 'downloaded').map((e) => e.file);
    expect(downloadedFirst.length).toBeGreaterThanOrEqual(1);
    expect(downloadedFirst.length).toBeLessThan(photos.length);
    expect(existsSync(join(root, JOURNAL))).toBe(true);

    const second = countingFetch();
    const s = await runSubmit({ ...common, fetch: second.f });
    expect(s.files).toBe(photos.length + 2);
    expect(s.done).toBe(photos.length);
    expect(s.billableImages).toBe(photos.length);
    expect(s.failed.map((f) => f.file).sort()).toEqual(['cut.jpg', 'notes.jpg']);
    expect(s.failed.find((f) => f.file === 'notes.jpg')!.code).toBe('unsupported-media-type');
    // The API refused the truncated JPEG at job creation; the detail names the local file.
    const cut = s.failed.find((f) => f.file === 'cut.jpg')!;
    expect(cut.detail).toMatch(/^cut\.jpg: /);
    expect(JSON.parse(await readFile(join(root, 'cut.jpg.error.json'), 'utf8')).code).toBe(cut.code);
    expect(s.monthBillableImages).toBeGreaterThanOrEqual(photos.length);
    expect(describeSummary(s)).toMatch(/5 billable images/);

    // Every result and report is next to its input, decodes, has the input's size and is not the input.
    for (const p of photos) {
      const out = join(root, p.replace(/\.jpg$/, '.anonymized.jpg'));
      const bytes = await readFile(out);
      const [a, b] = await Promise.all([sharp(bytes).metadata(), sharp(join(root, p)).metadata()]);
      expect([a.width, a.height]).toEqual([b.width, b.height]);
      expect(bytes.equals(await readFile(join(root, p)))).toBe(false);
      const report = JSON.parse(await readFile(join(root, `${p}.report.json`), 'utf8'));
      expect(report.faces.length).toBeGreaterThan(0);
      // The per-face table beside it, as `anonymize` writes it (this stack's stand-in covers with a fill).
      const table = await readFile(join(root, `${p}.faces.txt`), 'utf8');
      expect(table).toMatch(new RegExp(`face 0 \\[\\d+,\\d+ \\d+×\\d+\\] ${report.faces[0].method}`));
      expect(table).toContain(`utility n/a (${report.faces[0].method})`);
    }
    // Exactly once: each result object was fetched once over both runs, each file uploaded once.
    const results = new Map<string, number>();
    for (const c of [first, second])
      for (const [k, n] of c.counts)
        if (/^GET \/[^/]+\/results\//.test(k) && !k.endsWith('.json'))
          results.set(k, (results.get(k) ?? 0) + n);
    expect(results.size).toBe(photos.length);
    expect([...results.values()].every((n) => n === 1)).toBe(true);
    // 5 photos + the truncated JPEG went to storage once each (the text file never left the machine).
    expect(first.sum(/^POST \/v1\/uploads$/) + second.sum(/^POST \/v1\/uploads$/)).toBe(photos.length + 1);
    // Jobs of at most 2 images (the stack's limit), and the results are the ones in storage.
    const jobIds = new Set(
      (await readFile(join(root, JOURNAL), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { t: string; jobId?: string; images?: unknown[] })
        .filter((e) => e.t === 'job')
        .map((e) => {
          expect(e.images!.length).toBeLessThanOrEqual(2);
          return e.jobId;
        }),
    );
    expect(jobIds.size).toBe(3);
    const client = new FalcoClient({ baseUrl: stack.url, apiKey: stack.apiKey });
    const job = await client.getJob([...jobIds][0]!);
    const img = job.images[0]!;
    const key = new URL(img.result!.url).pathname.split('/').slice(2).join('/');
    const stored = await stack.ctx.clients.s3.send(
      new GetObjectCommand({ Bucket: stack.ctx.cfg.resultsBucket, Key: decodeURIComponent(key) }),
    );
    const storedBytes = Buffer.from(await stored.Body!.transformToByteArray());
    const local = await Promise.all(
      photos.map((p) => readFile(join(root, p.replace(/\.jpg$/, '.anonymized.jpg')))),
    );
    expect(local.some((b) => b.equals(storedBytes))).toBe(true);

    // A third run has nothing left to do and transfers nothing.
    const third = countingFetch();
    const again = await runSubmit({ ...common, fetch: third.f });
    expect(again).toMatchObject({ skipped: photos.length + 2, uploaded: 0, jobs: 0, done: photos.length });
    expect(third.sum(/^POST /)).toBe(0);
    expect(third.sum(/results\//)).toBe(0);
  });

  it('says in one line what is wrong with the folder or the key', async () => {
    await expect(
      runSubmit({ dir: join(root, 'missing'), api: stack.url, key: stack.apiKey }),
    ).rejects.toThrow(/is not a directory/);
    const empty = await mkdtemp(join(tmpdir(), 'falco-submit-empty-'));
    await expect(runSubmit({ dir: empty, api: stack.url, key: stack.apiKey, log: () => {} })).rejects.toThrow(
      /no JPEG, PNG or WebP files/,
    );
    const other = await mkdtemp(join(tmpdir(), 'falco-submit-key-'));
    await writeFile(join(other, 'x.jpg'), SAMPLE);
    await expect(
      runSubmit({ dir: other, api: stack.url, key: 'fk_live_wrong', progress: false, log: () => {} }),
    ).rejects.toMatchObject({ status: 401 });
    await rm(empty, { recursive: true, force: true });
    await rm(other, { recursive: true, force: true });
  });
});
