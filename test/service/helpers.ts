/** Shared fixtures for the service tests: sample photos, hostile files, a webhook receiver, polling. */
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { LocalStack } from '../../functions/local/stack.js';

export const SAMPLE = readFileSync(
  new URL('../../node_modules/@vladmandic/face-api/demo/sample1.jpg', import.meta.url),
);
export const SAMPLE2 = readFileSync(
  new URL('../../node_modules/@vladmandic/face-api/demo/sample2.jpg', import.meta.url),
);
export const SAMPLE_PATH = new URL(
  '../../node_modules/@vladmandic/face-api/demo/sample1.jpg',
  import.meta.url,
).pathname;

function crc32(buf: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of buf) {
    let c = (crc ^ byte) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A valid, tiny (~100 KB) PNG whose header claims 10000×10000 = 100 MP: decoding it would need 100+ MB. */
export function pngBomb(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(10000, 0);
  ihdr.writeUInt32BE(10000, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const idat = deflateSync(Buffer.alloc(10001 * 10000), { level: 9 });
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

export const truncatedJpeg = () => SAMPLE.subarray(0, Math.floor(SAMPLE.length * 0.6));
/** JPEG data whose first bytes were overwritten: no known signature. */
export const wrongMagic = () => Buffer.concat([Buffer.from([0x00, 0x11, 0x22, 0x33]), SAMPLE.subarray(4)]);
export const textFile = () => Buffer.from('name,email\nalice,alice@example.com\n', 'utf8');

export interface Received {
  headers: Record<string, string>;
  body: string;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** Status codes to answer with, in order; 200 once exhausted. */
  script: number[];
  close(): Promise<void>;
}

export async function startReceiver(script: number[] = []): Promise<Receiver> {
  const received: Received[] = [];
  const state = { script: [...script] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        headers: req.headers as Record<string, string>,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.statusCode = state.script.shift() ?? 200;
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    get script() {
      return state.script;
    },
    set script(v: number[]) {
      state.script = [...v];
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 30_000,
  everyMs = 150,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export function api(stack: LocalStack, key = stack.apiKey) {
  const call = async (
    method: string,
    path: string,
    init: { body?: RequestInit['body']; headers?: Record<string, string>; json?: unknown } = {},
  ) => {
    const headers: Record<string, string> = { authorization: `Bearer ${key}`, ...(init.headers ?? {}) };
    let body = init.body;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(stack.url + path, { method, headers, body });
    const text = await res.text();
    let data: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    return { status: res.status, headers: res.headers, data };
  };
  return {
    call,
    postImages: (
      images: Array<{ bytes: Uint8Array; name?: string; type?: string }>,
      extra: { options?: unknown; webhook?: string; headers?: Record<string, string> } = {},
    ) => {
      const form = new FormData();
      for (const i of images)
        form.append('image', new Blob([i.bytes], { type: i.type ?? 'image/jpeg' }), i.name ?? 'photo.jpg');
      if (extra.options !== undefined) form.append('options', JSON.stringify(extra.options));
      if (extra.webhook) form.append('webhook', extra.webhook);
      return call('POST', '/v1/jobs', { body: form, headers: extra.headers });
    },
  };
}

export async function listKeys(stack: LocalStack, bucket: string, prefix: string): Promise<string[]> {
  const out = await stack.ctx.clients.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

/** The same JPEG with its SOF header raised to `width`×`height` (the scan data still holds the original rows). */
export function raiseSof(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i + 9 < out.length;) {
    if (out[i] !== 0xff) throw new Error(`no JPEG marker at ${i}`);
    const marker = out[i + 1];
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
    i += 2 + out.readUInt16BE(i + 2);
  }
  throw new Error('no SOF marker');
}

/** A PNG whose IHDR claims `width`×`height` over a few bytes of data: only the header is meant to be read. */
export { pngBomb as pngHeaderOnly } from '../pipeline/metadata-util.js';

/** `bytes` with `n` bytes from `at` (a fraction of the length) overwritten: same length, damaged content. */
export function damage(bytes: Buffer, at = 0.5, n = 64): Buffer {
  const out = Buffer.from(bytes);
  const from = Math.floor(out.length * at);
  for (let i = from; i < Math.min(out.length, from + n); i++) out[i] = (out[i] * 31 + 17) & 255;
  return out;
}
