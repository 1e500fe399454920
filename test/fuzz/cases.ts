/**
 * Seeded fuzz cases against the API (issue #11), shared by the bounded suite test and `npm run bench -- fuzz`.
 * Each case is one request: valid images (must be accepted), mutated images (truncated, bytes damaged, header
 * dimensions rewritten, garbage around them), other formats and random bytes, hostile ids in every position,
 * option values of every wrong type and range, malformed multipart and JSON bodies, odd headers. The oracle:
 * a valid image → 202; anything → 2xx or a 4xx application/problem+json whose detail is precise (non-empty,
 * not a generic fallback, no libvips text); never a 5xx.
 */
import sharp from 'sharp';
import { readFileSync } from 'node:fs';
import { newJobId, newUploadId } from '../../functions/shared/ids.js';

export interface FuzzCase {
  kind: string;
  /** The request must be accepted (202): a valid image with valid options. */
  mustAccept: boolean;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: FormData | string;
}

/** mulberry32: small, fast, seedable; quality is plenty for picking mutations. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  return { next, int, pick };
}
export type Rng = ReturnType<typeof rng>;

export interface Seeds {
  jpeg: Buffer;
  png: Buffer;
  webp: Buffer;
  pngAlpha: Buffer;
}

export async function makeSeeds(): Promise<Seeds> {
  const photo = readFileSync(
    new URL('../../node_modules/@vladmandic/face-api/demo/sample1.jpg', import.meta.url),
  );
  const small = sharp(photo).resize(96);
  return {
    jpeg: await small.clone().jpeg({ quality: 80 }).toBuffer(),
    png: await small.clone().png().toBuffer(),
    webp: await small.clone().webp({ quality: 70 }).toBuffer(),
    pngAlpha: await small.clone().ensureAlpha(0.5).png().toBuffer(),
  };
}

const HOSTILE_IDS = [
  '../demo/',
  '..%2Fdemo%2F',
  '/uploads/demo/',
  '%00',
  '\\..\\',
  'A'.repeat(5000),
  '',
  ' ',
  'upl_',
  'job_',
  '${jndi:ldap://x}',
  '<script>',
  '\u202e',
];

function mutate(r: Rng, b: Buffer): { bytes: Buffer; how: string } {
  const out = Buffer.from(b);
  switch (r.int(0, 7)) {
    case 0:
      return { bytes: out.subarray(0, r.int(0, out.length - 1)), how: 'truncated' };
    case 1: {
      const n = r.int(1, 64);
      for (let i = 0; i < n; i++) out[r.int(0, out.length - 1)] = r.int(0, 255);
      return { bytes: out, how: `flip${n}` };
    }
    case 2: {
      // Header dimensions rewritten: PNG IHDR, the first JPEG SOF, or the WebP VP8 frame.
      const w = r.pick([0, 1, 65535, 2 ** 31, r.int(1, 70000)]);
      const h = r.pick([0, 1, 65535, r.int(1, 70000)]);
      if (out[0] === 0x89) {
        out.writeUInt32BE(w >>> 0, 16);
        out.writeUInt32BE(h >>> 0, 20);
      } else if (out[0] === 0xff) {
        for (let i = 2; i + 9 < out.length;) {
          const m = out[i + 1]!;
          if (m >= 0xc0 && m <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(m)) {
            out.writeUInt16BE(h & 0xffff, i + 5);
            out.writeUInt16BE(w & 0xffff, i + 7);
            break;
          }
          i += 2 + out.readUInt16BE(i + 2);
        }
      } else if (out.length > 30) {
        out.writeUInt16LE(w & 0x3fff, 26);
        out.writeUInt16LE(h & 0x3fff, 28);
      }
      return { bytes: out, how: `dims${w}x${h}` };
    }
    case 3:
      return { bytes: Buffer.concat([out, randomBytes(r, r.int(1, 2000))]), how: 'trailing-garbage' };
    case 4:
      return { bytes: Buffer.concat([randomBytes(r, r.int(1, 16)), out]), how: 'leading-garbage' };
    case 5: {
      const at = r.int(0, out.length - 1);
      return { bytes: Buffer.concat([out.subarray(0, at), out.subarray(at + r.int(1, 200))]), how: 'hole' };
    }
    case 6: {
      const at = r.int(0, out.length - 1);
      return {
        bytes: Buffer.concat([out.subarray(0, at), randomBytes(r, r.int(1, 500)), out.subarray(at)]),
        how: 'insert',
      };
    }
    default:
      // RIFF/PNG length fields set to odd values.
      if (out.length > 12) out.writeUInt32LE(r.pick([0, 1, 0xffffffff, r.int(0, 1e6)]), 4);
      return { bytes: out, how: 'length-field' };
  }
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(0, 255);
  return b;
}

function validOptions(r: Rng): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (r.next() < 0.5) o.steps = r.int(1, 500);
  if (r.next() < 0.3) o.seed = r.int(0, 2 ** 32 - 1);
  if (r.next() < 0.3) o.format = r.pick(['jpeg', 'png', 'webp']);
  if (r.next() < 0.2) o.idMargin = r.next() * 2 - 1;
  if (r.next() < 0.2) o.layers = [r.int(0, 8), r.int(9, 18)];
  if (r.next() < 0.2) o.smallFaces = r.pick(['falco', 'blur', 'pixelate', 'fill']);
  return o;
}

const WEIRD_VALUES: unknown[] = [
  null,
  -1,
  0,
  1e308,
  -1e308,
  2 ** 53,
  0.5,
  'ten',
  '',
  [],
  {},
  [1, 2, 3],
  true,
  'NaN',
  '1e309',
  1.5,
  -0,
];

function weirdOptions(r: Rng): unknown {
  const keys = [
    'steps',
    'seed',
    'idMargin',
    'lambdaId',
    'lambdaAttr',
    'lr',
    'layers',
    'format',
    'smallFaces',
    'onResidual',
    'onRecognisable',
    '__proto__',
    'constructor',
    'x'.repeat(300),
  ];
  switch (r.int(0, 3)) {
    case 0:
      return r.pick(WEIRD_VALUES);
    case 1:
      return Object.fromEntries(
        Array.from({ length: r.int(1, 4) }, () => [r.pick(keys), r.pick(WEIRD_VALUES)]),
      );
    case 2:
      return { steps: r.pick([0, 501, -5, 50.5, 1000, 1e9]) };
    default:
      return { layers: r.pick([[8, 3], [0, 19], [-1, 4], [3], [3, 8, 9], 'all', [3.5, 8]]) };
  }
}

export function makeCase(r: Rng, seeds: Seeds, n: number): FuzzCase {
  const images = [seeds.jpeg, seeds.png, seeds.webp, seeds.pngAlpha];
  const multipart = (parts: Array<[string, Blob | string, string?]>) => {
    const form = new FormData();
    for (const [k, v, name] of parts)
      if (typeof v === 'string') form.append(k, v);
      else form.append(k, v, name ?? 'f');
    return form;
  };
  const kind = r.int(0, 9);
  switch (kind) {
    case 0:
    case 1: {
      const opts = validOptions(r);
      return {
        kind: 'valid-image',
        mustAccept: true,
        method: 'POST',
        path: '/v1/jobs',
        headers: r.next() < 0.3 ? { 'idempotency-key': `fuzz-${n}` } : {},
        body: multipart([
          ['image', new Blob([r.pick(images)]), r.pick(['a.jpg', 'x', '../../etc/passwd', 'é.png'])],
          ...(Object.keys(opts).length
            ? ([['options', JSON.stringify(opts)]] as Array<[string, string]>)
            : []),
        ]),
      };
    }
    case 2:
    case 3: {
      const m = mutate(r, r.pick(images));
      return {
        kind: `mutated-${m.how.replace(/\d+/g, '')}`,
        mustAccept: false,
        method: 'POST',
        path: '/v1/jobs',
        headers: {},
        body: multipart([['image', new Blob([m.bytes])]]),
      };
    }
    case 4: {
      const bytes = r.pick([
        () => randomBytes(r, r.int(0, 4000)),
        () => Buffer.from('GIF89a' + 'x'.repeat(r.int(0, 100))),
        () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>'),
        () => Buffer.from('%PDF-1.7\n'),
        () => Buffer.from([0xff, 0xd8, 0xff]),
        () => Buffer.from('\x89PNG\r\n\x1a\n'),
        () => Buffer.from('RIFF\0\0\0\0WEBPVP8 '),
      ])();
      return {
        kind: 'other-bytes',
        mustAccept: false,
        method: 'POST',
        path: '/v1/jobs',
        headers: {},
        body: multipart([['image', new Blob([bytes])]]),
      };
    }
    case 5: {
      const opts = weirdOptions(r);
      return {
        kind: 'bad-options',
        mustAccept: false,
        method: 'POST',
        path: '/v1/jobs',
        headers: {},
        body: multipart([
          ['image', new Blob([seeds.jpeg])],
          ['options', r.next() < 0.2 ? '{"steps":' : JSON.stringify(opts)],
          ...(r.next() < 0.2 ? ([['options', '{}']] as Array<[string, string]>) : []),
          ...(r.next() < 0.1 ? ([['bogus', 'x']] as Array<[string, string]>) : []),
        ]),
      };
    }
    case 6: {
      const uploadId = r.pick([
        () => r.pick(HOSTILE_IDS) + newUploadId(),
        () => newUploadId(),
        () => r.pick(HOSTILE_IDS),
        () => r.pick(WEIRD_VALUES),
      ])();
      const body = r.pick([
        () => JSON.stringify({ images: [{ uploadId }] }),
        () =>
          JSON.stringify({
            images: Array.from({ length: r.int(0, 30) }, () => ({ uploadId: newUploadId() })),
          }),
        () => JSON.stringify({ images: [{ uploadId, extra: 1 }], options: weirdOptions(r) }),
        () =>
          JSON.stringify({
            images: [{ uploadId: newUploadId() }],
            webhook: r.pick([
              'http://169.254.169.254/',
              'https://[::ffff:a9fe:a9fe]/',
              'https://[::7f00:1]/',
              'ftp://x',
              'x'.repeat(3000),
              'https://example.com/ok',
            ]),
          }),
        () => r.pick(['', '{', 'null', '[]', '"x"', '{"images":null}', '{"images":[null]}']),
      ])();
      return {
        kind: 'json-body',
        mustAccept: false,
        method: 'POST',
        path: '/v1/jobs',
        headers: { 'content-type': r.pick(['application/json', 'application/json; charset=utf-8']) },
        body,
      };
    }
    case 7: {
      const id = r.pick([
        () => newJobId(),
        () => encodeURIComponent(r.pick(HOSTILE_IDS) + newJobId()),
        () => encodeURIComponent(r.pick(HOSTILE_IDS)),
      ])();
      return {
        kind: 'job-path',
        mustAccept: false,
        method: r.pick(['GET', 'DELETE']),
        path: `/v1/jobs/${id}`,
        headers: {},
      };
    }
    case 8: {
      const q = r.pick([
        () =>
          `/v1/jobs?cursor=${encodeURIComponent(Buffer.from(JSON.stringify({ gsi1pk: 'TENANT#demo', gsi1sk: r.pick(HOSTILE_IDS), pk: 'JOB#x', sk: 'JOB' })).toString('base64url'))}`,
        () => `/v1/jobs?cursor=${encodeURIComponent(r.pick(HOSTILE_IDS))}`,
        () => `/v1/jobs?limit=${encodeURIComponent(String(r.pick(WEIRD_VALUES)))}`,
        () =>
          `/v1/usage?month=${encodeURIComponent(r.pick(['2026-11', '2026-13', '../x', 'A'.repeat(3000)]))}`,
        () => `/v1/${encodeURIComponent(r.pick(HOSTILE_IDS))}`,
      ])();
      return { kind: 'query', mustAccept: false, method: 'GET', path: q, headers: {} };
    }
    default: {
      return r.pick<() => FuzzCase>([
        () => ({
          kind: 'upload',
          mustAccept: false,
          method: 'POST',
          path: '/v1/uploads',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            contentType: r.pick(['image/jpeg', 'image/svg+xml', '', 'text/html']),
            bytes: r.pick(WEIRD_VALUES),
          }),
        }),
        () => ({
          kind: 'content-type',
          mustAccept: false,
          method: 'POST',
          path: '/v1/jobs',
          headers: {
            'content-type': r.pick([
              'text/plain',
              'multipart/form-data',
              'multipart/form-data; boundary=x',
              'application/xml',
              '',
            ]),
          },
          body: r.pick(['x', '--x\r\n\r\n', '']),
        }),
        () => ({
          kind: 'idempotency',
          mustAccept: false,
          method: 'POST',
          path: '/v1/jobs',
          headers: { 'idempotency-key': r.pick(['k'.repeat(r.int(256, 6000)), 'a b', '']) },
          body: multipart([['image', new Blob([seeds.jpeg])]]),
        }),
        () => ({
          kind: 'many-images',
          mustAccept: false,
          method: 'POST',
          path: '/v1/jobs',
          headers: {},
          body: multipart(
            Array.from({ length: r.int(21, 30) }, () => ['image', new Blob([seeds.jpeg])] as [string, Blob]),
          ),
        }),
      ])();
    }
  }
}

export interface Verdict {
  ok: boolean;
  why?: string;
}

/** The oracle (see the file comment). `body` is the response text. */
export function judge(c: FuzzCase, status: number, contentType: string | null, body: string): Verdict {
  if (status >= 500) return { ok: false, why: `${status}: ${body.slice(0, 200)}` };
  if (c.mustAccept)
    return status === 202
      ? { ok: true }
      : { ok: false, why: `valid image got ${status}: ${body.slice(0, 200)}` };
  if (status < 400) return { ok: true };
  if (contentType !== 'application/problem+json') return { ok: false, why: `${status} with ${contentType}` };
  let p: { detail?: unknown; type?: unknown };
  try {
    p = JSON.parse(body);
  } catch {
    return { ok: false, why: 'problem body is not JSON' };
  }
  const d = typeof p.detail === 'string' ? p.detail : '';
  if (d.length < 10 || /^(bad request|internal error)/i.test(d))
    return { ok: false, why: `imprecise detail "${d}"` };
  if (/vips|unknown error/i.test(d)) return { ok: false, why: `libvips text in detail "${d}"` };
  if (d.length > 2000) return { ok: false, why: `detail of ${d.length} characters (echoed input?)` };
  if (typeof p.type !== 'string' || !/^https:\/\/falco\.dev\/problems\/[a-z0-9]+(-[a-z0-9]+)*$/.test(p.type))
    return { ok: false, why: `type ${String(p.type)} is not a kebab-case slug` };
  return { ok: true };
}

/** The environment a fuzz stack runs with: limits that would turn valid images into 429s are lifted. */
export const FUZZ_ENV = {
  RATE_LIMIT_RPS: '1000000',
  RATE_LIMIT_BURST: '1000000',
  MAX_IN_FLIGHT_IMAGES: '1000000000',
  JOBS_PER_MINUTE: '1000000000',
  LOG_LEVEL: 'CRITICAL',
};
