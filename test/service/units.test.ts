/** Fast unit tests of the service's pure pieces: SSRF guard, retry schedule, token bucket, sniffing, keys. */
import { describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkWebhookUrl, guardedLookup, refusalReason } from '../../functions/webhooks/ssrf.js';
import { deliver } from '../../functions/webhooks/deliver.js';
import { retryDelaySeconds } from '../../functions/webhooks/handler.js';
import { loadConfig } from '../../functions/shared/config.js';
import { TokenBuckets } from '../../functions/api/rate-limit.js';
import { sniffUpload as sniff, validateImage } from '../../functions/api/validate.js';
import { inputKey, parseResultKey, reportKey, resultKey, uploadKey } from '../../functions/shared/layout.js';
import { isId, newImageId, newJobId, newUploadId, ulid } from '../../functions/shared/ids.js';
import { pngBomb, SAMPLE, textFile, truncatedJpeg } from './helpers.js';
import { ProblemError } from '../../functions/shared/problem.js';

const baseEnv = {
  UPLOADS_BUCKET: 'u',
  RESULTS_BUCKET: 'r',
  JOBS_TABLE: 'j',
  KEYS_TABLE: 'k',
  USAGE_TABLE: 'us',
  JOBS_QUEUE_URL: 'q',
  WEBHOOKS_QUEUE_URL: 'w',
};

describe('SSRF guard', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['10.0.0.8', 'private'],
    ['172.31.255.1', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['100.100.100.200', 'private'],
    ['0.0.0.0', 'private'],
    ['::1', 'loopback'],
    ['fd00:ec2::254', 'private'],
    ['fe80::1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['224.0.0.1', 'private'],
    // Embedded-IPv4 forms: judged by the IPv4 inside, and refused in any case.
    ['::a9fe:a9fe', 'IPv4-compatible IPv6 address (link-local'],
    ['::7f00:1', 'IPv4-compatible IPv6 address (a loopback'],
    ['::ffff:0:a9fe:a9fe', 'IPv4-translated IPv6 address (link-local'],
    ['::ffff:7f00:1', 'IPv4-mapped IPv6 address (a loopback'],
    ['0:0:0:0:0:ffff:169.254.169.254', 'IPv4-mapped IPv6 address (link-local'],
    ['64:ff9b::a9fe:a9fe', 'NAT64 IPv6 address (link-local'],
    ['64:ff9b:1::a00:1', 'NAT64 (local-use) IPv6 address (a private'],
    ['::ffff:93.184.215.14', 'IPv4-mapped IPv6 address; use the IPv4 address'],
    ['2002:a9fe:a9fe::1', 'private, reserved'],
    ['2001:0:4136:e378::1', 'private, reserved'],
  ])('refuses %s', (ip, why) => {
    expect(refusalReason(ip, false)).toContain(why);
  });

  it('accepts public addresses, and loopback only in local mode', () => {
    expect(refusalReason('93.184.215.14', false)).toBeNull();
    expect(refusalReason('2606:4700::6810:84e5', false)).toBeNull();
    expect(refusalReason('127.0.0.1', true)).toBeNull();
    expect(refusalReason('10.0.0.1', true)).toContain('private');
  });

  it('checks webhook URLs syntactically', () => {
    expect(checkWebhookUrl('https://example.com/hook', false)).toBeNull();
    expect(checkWebhookUrl('http://example.com/hook', false)).toBe('webhook must use https');
    expect(checkWebhookUrl('https://user:pw@example.com/', false)).toBe(
      'webhook must not contain credentials',
    );
    expect(checkWebhookUrl('https://localhost/x', false)).toBe('webhook host is localhost');
    expect(checkWebhookUrl('http://localhost:9000/x', true)).toBeNull();
    expect(checkWebhookUrl('https://metadata.google.internal/', false)).toBe(
      'webhook host is an internal name',
    );
    expect(checkWebhookUrl('https://[::1]/', false)).toContain('loopback');
    // The forms the issue found getting through, as URLs.
    for (const host of ['[::a9fe:a9fe]', '[::7f00:1]', '[::ffff:0:a9fe:a9fe]', '[::169.254.169.254]'])
      expect(checkWebhookUrl(`https://${host}/hook`, false), host).toMatch(/IPv4-(compatible|translated)/);
    // Also in local mode, where plain loopback is allowed: an embedded form never is.
    expect(checkWebhookUrl('http://[::7f00:1]:8080/', true)).toMatch(/loopback/);
    expect(checkWebhookUrl('not a url', false)).toBe('webhook is not an absolute URL');
  });

  it('refuses after DNS resolution: a name that resolves to loopback is not delivered outside local mode', async () => {
    const err = await new Promise<Error | null>((resolve) =>
      guardedLookup(false)('localhost', {}, (e) => resolve(e)),
    );
    expect(err?.message).toMatch(/refusing to deliver to localhost: .*loopback/);
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      const refused = await deliver(
        `http://localhost:${port}/`,
        '{}',
        {},
        { allowLoopback: false, timeoutMs: 2000 },
      );
      expect(refused).toMatchObject({ ok: false, permanent: true });
      expect(refused.error).toMatch(/refused/);
      const literal = await deliver(
        `http://127.0.0.1:${port}/`,
        '{}',
        {},
        { allowLoopback: false, timeoutMs: 2000 },
      );
      expect(literal).toMatchObject({ ok: false, permanent: true });
      expect(hits).toBe(0);
      const allowed = await deliver(
        `http://localhost:${port}/`,
        '{}',
        {},
        { allowLoopback: true, timeoutMs: 2000 },
      );
      expect(allowed).toEqual({ ok: true, status: 200 });
      expect(hits).toBe(1);
    } finally {
      server.close();
    }
  });
});

describe('webhook retry schedule', () => {
  it('is exponential and spans at least 24 h with the production defaults', () => {
    const cfg = loadConfig(baseEnv);
    const delays = Array.from({ length: cfg.webhook.maxAttempts - 1 }, (_, i) =>
      retryDelaySeconds(cfg, i + 1),
    );
    expect(delays.slice(0, 4)).toEqual([10, 30, 90, 270]);
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1]);
    const total = delays.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(24 * 3600);
    expect(total).toBeLessThan(48 * 3600);
  });
});

describe('token bucket', () => {
  it('allows the burst, then refills at the rate', () => {
    let t = 0;
    const b = new TokenBuckets(2, 3, () => t);
    expect([b.take('k'), b.take('k'), b.take('k')].map((v) => v.allowed)).toEqual([true, true, true]);
    const denied = b.take('k');
    expect(denied).toEqual({ allowed: false, remaining: 0, retryAfter: 1 });
    expect(b.take('other').allowed).toBe(true);
    t = 500; // +1 token at 2/s
    expect(b.take('k').allowed).toBe(true);
    expect(b.take('k').allowed).toBe(false);
  });
});

describe('image validation', () => {
  it('sniffs by content', () => {
    expect(sniff(SAMPLE)).toBe('jpeg');
    expect(sniff(pngBomb())).toBe('png');
    expect(sniff(textFile())).toEqual({ other: 'text' });
    expect(sniff(Buffer.from('GIF89a....'))).toEqual({ other: 'GIF' });
    expect(sniff(Buffer.from('%PDF-1.7\n'))).toEqual({ other: 'PDF' });
  });

  it('refuses a bomb from the header alone and a truncated file by decoding', async () => {
    const limits = { maxBytes: 10_000_000, maxPixels: 40_000_000, maxSide: 16_384 };
    await expect(validateImage(pngBomb(), limits, 'image 1')).rejects.toMatchObject({
      status: 422,
      code: 'too-many-pixels',
    });
    await expect(validateImage(truncatedJpeg(), limits, 'image 1')).rejects.toMatchObject({
      status: 422,
      code: 'truncated-image',
    });
    await expect(validateImage(SAMPLE, { ...limits, maxBytes: 1000 }, 'image 1')).rejects.toBeInstanceOf(
      ProblemError,
    );
    expect(await validateImage(SAMPLE, limits, 'image 1')).toEqual({
      format: 'jpeg',
      width: 1920,
      height: 1280,
      bytes: SAMPLE.length,
    });
  });
});

describe('ids and keys', () => {
  it('ids sort by time and validate', () => {
    const a = newJobId(1_700_000_000_000);
    const b = newJobId(1_700_000_000_001);
    expect(a < b).toBe(true);
    expect(isId('job', a)).toBe(true);
    expect(isId('img', a)).toBe(false);
    expect(ulid()).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  it('result keys round-trip, and every key builder refuses parts that are not of their exact format', () => {
    const job = newJobId();
    const img = newImageId();
    const k = resultKey('acme', job, img, 'jpeg');
    expect(k).toBe(`results/acme/${job}/${img}.jpg`);
    expect(parseResultKey(k)).toEqual({
      tenant: 'acme',
      jobId: job,
      imageId: img,
      ext: 'jpg',
      format: 'jpeg',
    });
    expect(parseResultKey(`reports/acme/${job}/${img}.json`)).toBeNull();
    expect(parseResultKey(`results/acme/job_X/${img}.jpg`)).toBeNull();
    expect(parseResultKey(`results/../${job}/${img}.jpg`)).toBeNull();
    const upl = newUploadId();
    expect(uploadKey('acme', upl)).toBe(`uploads/acme/${upl}`);
    for (const bad of [
      `../demo/${upl}`,
      `${upl}/../x`,
      `/${upl}`,
      '%2E%2E%2F' + upl,
      upl + 'A',
      'A'.repeat(5000),
      upl.toLowerCase(),
    ])
      expect(() => uploadKey('acme', bad), bad).toThrow(/invalid upload id/);
    expect(() => uploadKey('../acme', upl)).toThrow(/invalid tenant/);
    expect(() => inputKey('acme', job, '../x')).toThrow(/invalid image id/);
    expect(() => reportKey('acme', 'job_..%2F', img)).toThrow(/invalid job id/);
    expect(isId('upl', upl)).toBe(true);
    expect(isId('upl', ` ${upl}`)).toBe(false);
    expect(isId('job', 42)).toBe(false);
  });

  it('config refuses missing or malformed variables', () => {
    expect(() => loadConfig({ ...baseEnv, JOBS_TABLE: '' })).toThrow(
      'missing environment variable JOBS_TABLE',
    );
    expect(() => loadConfig({ ...baseEnv, RETENTION_DAYS: 'soon' })).toThrow(
      /RETENTION_DAYS must be a non-negative number/,
    );
  });
});

describe('one set of limits', () => {
  it('the API schema and the pipeline accept and refuse the same option values (functions/shared/limits.ts)', async () => {
    const { OptionsSchema } = await import('../../functions/api/schemas.js');
    const { resolveOptions } = await import('../../functions/pipeline/anonymize.js');
    const { OPTION_RANGES } = await import('../../functions/shared/limits.js');
    const manifest = {
      defaults: { idMargin: 0, steps: 50, lambdaId: 10, lambdaAttr: 0.1, layers: [3, 8], lr: 0.01 },
      trainableRange: [0, 18],
    } as never;
    for (const name of ['idMargin', 'steps', 'lambdaId', 'lambdaAttr', 'lr', 'seed'] as const) {
      const { min, max } = OPTION_RANGES[name];
      for (const [v, ok] of [
        [min, true],
        [max, true],
        [max + 1, false],
        [min - 1, false],
      ] as const) {
        expect(OptionsSchema.safeParse({ [name]: v }).success, `api ${name}=${v}`).toBe(ok);
        expect(
          (() => {
            try {
              resolveOptions({ [name]: v }, manifest);
              return true;
            } catch {
              return false;
            }
          })(),
          `pipeline ${name}=${v}`,
        ).toBe(ok);
      }
    }
  });

  it('the format table and its literal tuples agree', async () => {
    const { FORMATS, OUTPUT_FORMATS, CONTENT_TYPE_LIST } =
      await import('../../functions/pipeline/formats.js');
    expect(Object.keys(FORMATS)).toEqual([...OUTPUT_FORMATS]);
    expect(OUTPUT_FORMATS.map((f) => FORMATS[f].contentType)).toEqual([...CONTENT_TYPE_LIST]);
  });

  it('megapixels are printed with enough precision to differ from the limit', async () => {
    const { formatMegapixels } = await import('../../functions/shared/limits.js');
    expect(formatMegapixels(40_001_000, 40_000_000)).toEqual({ value: '40.001 MP', limit: '40.000 MP' });
    expect(formatMegapixels(100_000_000, 40_000_000)).toEqual({ value: '100.0 MP', limit: '40.0 MP' });
    expect(formatMegapixels(40_000_001, 40_000_000)).toEqual({
      value: '40.000001 MP',
      limit: '40.000000 MP',
    });
  });
});
