/**
 * A typed client for the FALCO API. The request and response types are inferred from the very zod
 * schemas that generate the OpenAPI document (`functions/api/schemas.ts`, type-only imports: nothing of
 * the server is loaded at run time), so a change of the API that breaks the client breaks the build;
 * `OPERATIONS` lists the method and path of every call, and a test holds it against the served
 * `/openapi.json`. Written by hand rather than generated because the whole surface is six calls plus the
 * S3 presigned POST, and a generator would add a build step and a dependency for no gain in safety here.
 *
 * Errors are `ApiError` (the problem+json `code` slug, `status`, `detail`, field `errors`). Requests that
 * are safe to repeat (GET, DELETE, uploads, job creation with an Idempotency-Key) are retried on 429
 * (after Retry-After), 502/503/504 and network failures, with capped exponential backoff.
 */
import type { z } from '@hono/zod-openapi';
import type {
  CreateJobJsonSchema,
  CreateUploadSchema,
  JobListSchema,
  JobSchema,
  OptionsSchema,
  ProblemSchema,
  UploadSchema,
  UsageSchema,
} from '../api/schemas.js';

export type Job = z.infer<typeof JobSchema>;
export type JobImage = Job['images'][number];
export type JobList = z.infer<typeof JobListSchema>;
export type Upload = z.infer<typeof UploadSchema>;
export type CreateUpload = z.infer<typeof CreateUploadSchema>;
export type CreateJob = z.infer<typeof CreateJobJsonSchema>;
export type JobOptions = z.infer<typeof OptionsSchema>;
export type Usage = z.infer<typeof UsageSchema>;
export type Problem = z.infer<typeof ProblemSchema>;
export type ImageContentType = CreateUpload['contentType'];

/** Method and path of every API call the client makes (checked against the OpenAPI document by a test). */
export const OPERATIONS = {
  createUpload: { method: 'post', path: '/v1/uploads' },
  createJob: { method: 'post', path: '/v1/jobs' },
  getJob: { method: 'get', path: '/v1/jobs/{id}' },
  listJobs: { method: 'get', path: '/v1/jobs' },
  deleteJob: { method: 'delete', path: '/v1/jobs/{id}' },
  getUsage: { method: 'get', path: '/v1/usage' },
} as const;

/** An error answer of the API (problem+json), or a transport failure (`status` 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    /** The problem type's slug (`too-many-images`), or `network` / `bad-response` for transport failures. */
    readonly code: string,
    readonly detail: string,
    readonly problem?: Problem & Record<string, unknown>,
    readonly retryAfterS?: number,
  ) {
    super(`${status ? `HTTP ${status} ` : ''}${code}: ${detail}`);
    this.name = 'ApiError';
  }
}

export interface ClientOptions {
  /** Base URL of the API, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com` or `http://localhost:8787`. */
  baseUrl: string;
  apiKey: string;
  /** Injected for tests (counting requests); defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Attempts for retryable requests (default 5). */
  attempts?: number;
  /** First backoff in ms (doubles, capped at 10 s; default 500). */
  backoffMs?: number;
  /** Per-request timeout in ms (default 60 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const RETRY_STATUS = new Set([429, 502, 503, 504]);
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(signal.reason as Error);
      },
      { once: true },
    );
  });

/** The problem type URI's last segment (`https://falco.dev/problems/too-many-images` → `too-many-images`). */
const slugOf = (type: unknown): string =>
  typeof type === 'string' && type.length ? (type.split('/').pop() ?? type) : 'error';

export class FalcoClient {
  private readonly base: string;
  private readonly f: typeof fetch;

  constructor(private readonly o: ClientOptions) {
    let url: URL;
    try {
      url = new URL(o.baseUrl);
    } catch {
      throw new ApiError(
        0,
        'invalid-url',
        `API URL "${o.baseUrl}" is not a URL (e.g. http://localhost:8787)`,
      );
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new ApiError(0, 'invalid-url', `API URL must be http(s), got ${url.protocol}`);
    this.base = url.href.replace(/\/+$/, '');
    this.f = o.fetch ?? fetch;
  }

  /** One API call with JSON in and out; problem+json answers become ApiError. */
  private async call<T>(
    method: string,
    path: string,
    init: {
      json?: unknown;
      query?: Record<string, string | number | undefined>;
      headers?: Record<string, string>;
      retry: boolean;
    },
  ): Promise<{ data: T; headers: Headers; status: number }> {
    const url = new URL(this.base + path);
    for (const [k, v] of Object.entries(init.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.o.apiKey}`,
      accept: 'application/json, application/problem+json',
      ...init.headers,
    };
    if (init.json !== undefined) headers['content-type'] = 'application/json';
    const attempts = init.retry ? (this.o.attempts ?? 5) : 1;
    let delay = this.o.backoffMs ?? 500;
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await this.f(url, {
          method: method.toUpperCase(),
          headers,
          ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
          signal: this.timeoutSignal(),
        });
      } catch (err) {
        if (this.o.signal?.aborted) throw err;
        if (attempt >= attempts)
          throw new ApiError(
            0,
            'network',
            `${method.toUpperCase()} ${url.host}${path}: ${(err as Error).message}`,
          );
        await sleep(delay, this.o.signal);
        delay = Math.min(delay * 2, 10_000);
        continue;
      }
      const text = await res.text();
      let body: unknown = undefined;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
      }
      if (res.ok) {
        if (body === undefined && res.status !== 204)
          throw new ApiError(
            res.status,
            'bad-response',
            `${method.toUpperCase()} ${path}: the answer is not JSON`,
          );
        return { data: body as T, headers: res.headers, status: res.status };
      }
      const retryAfter = Number(res.headers.get('retry-after'));
      const p = (body && typeof body === 'object' ? body : {}) as Problem & Record<string, unknown>;
      const err = new ApiError(
        res.status,
        slugOf(p.type),
        typeof p.detail === 'string' ? p.detail : `${res.status} ${res.statusText}`,
        body && typeof body === 'object' ? p : undefined,
        Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
      );
      if (!RETRY_STATUS.has(res.status) || attempt >= attempts) throw err;
      await sleep(err.retryAfterS !== undefined ? err.retryAfterS * 1000 : delay, this.o.signal);
      delay = Math.min(delay * 2, 10_000);
    }
  }

  private timeoutSignal(): AbortSignal {
    const t = AbortSignal.timeout(this.o.timeoutMs ?? 60_000);
    return this.o.signal ? AbortSignal.any([t, this.o.signal]) : t;
  }

  /** POST /v1/uploads: a presigned S3 POST for one image. */
  async createUpload(body: CreateUpload): Promise<Upload> {
    return (await this.call<Upload>('post', OPERATIONS.createUpload.path, { json: body, retry: true })).data;
  }

  /** Send the file to the presigned target (straight to S3, not through the API). */
  async sendUpload(
    upload: Upload,
    bytes: Uint8Array,
    contentType: ImageContentType,
    filename = 'image',
  ): Promise<void> {
    let delay = this.o.backoffMs ?? 500;
    const attempts = this.o.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      const form = new FormData();
      for (const [k, v] of Object.entries(upload.fields)) form.append(k, v);
      form.append('file', new Blob([bytes], { type: contentType }), filename);
      let status = 0;
      let why = '';
      try {
        const res = await this.f(upload.url, { method: 'POST', body: form, signal: this.timeoutSignal() });
        status = res.status;
        if (res.ok) {
          await res.arrayBuffer();
          return;
        }
        why = (await res.text()).match(/<Message>([^<]*)<\/Message>/)?.[1] ?? res.statusText;
      } catch (err) {
        if (this.o.signal?.aborted) throw err;
        why = (err as Error).message;
      }
      // S3 refuses a bad policy/size with 4xx: not worth repeating.
      if ((status >= 400 && status < 500) || attempt >= attempts)
        throw new ApiError(status, 'upload-failed', `upload of ${filename} to storage failed: ${why}`);
      await sleep(delay, this.o.signal);
      delay = Math.min(delay * 2, 10_000);
    }
  }

  /**
   * POST /v1/jobs with uploaded images. With `idempotencyKey` the call is retried safely (a repeat
   * returns the same job, `replayed` true).
   */
  async createJob(
    body: CreateJob,
    o: { idempotencyKey?: string } = {},
  ): Promise<{ job: Job; replayed: boolean }> {
    const r = await this.call<Job>('post', OPERATIONS.createJob.path, {
      json: body,
      ...(o.idempotencyKey ? { headers: { 'idempotency-key': o.idempotencyKey } } : {}),
      retry: o.idempotencyKey !== undefined,
    });
    return { job: r.data, replayed: r.headers.get('idempotent-replayed') === 'true' };
  }

  async getJob(id: string): Promise<Job> {
    return (await this.call<Job>('get', `/v1/jobs/${encodeURIComponent(id)}`, { retry: true })).data;
  }

  async listJobs(q: { limit?: number; cursor?: string } = {}): Promise<JobList> {
    return (await this.call<JobList>('get', OPERATIONS.listJobs.path, { query: q, retry: true })).data;
  }

  async deleteJob(id: string): Promise<void> {
    await this.call<undefined>('delete', `/v1/jobs/${encodeURIComponent(id)}`, { retry: true });
  }

  async getUsage(month?: string): Promise<Usage> {
    return (await this.call<Usage>('get', OPERATIONS.getUsage.path, { query: { month }, retry: true })).data;
  }

  /**
   * This deployment's enforced limits, published in the OpenAPI document as `x-limits` (numbers only;
   * e.g. `maxImagesPerJob`, `maxInFlightImages`, `maxUploadBytes`). Undefined when the document has none.
   */
  async getLimits(): Promise<Partial<Record<string, number>> | undefined> {
    const r = await this.call<Record<string, unknown>>('get', '/openapi.json', { retry: true });
    const x = r.data['x-limits'];
    if (!x || typeof x !== 'object') return undefined;
    return Object.fromEntries(Object.entries(x).filter(([, v]) => typeof v === 'number')) as Record<
      string,
      number
    >;
  }

  /** Fetch a presigned result or report URL (S3, no API key). */
  async download(url: string): Promise<Uint8Array> {
    let delay = this.o.backoffMs ?? 500;
    const attempts = this.o.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      let status = 0;
      let why = '';
      try {
        const res = await this.f(url, { signal: this.timeoutSignal() });
        status = res.status;
        if (res.ok) return new Uint8Array(await res.arrayBuffer());
        why = res.statusText;
        await res.arrayBuffer();
      } catch (err) {
        if (this.o.signal?.aborted) throw err;
        why = (err as Error).message;
      }
      // 403/404: the presigned URL expired or the object is gone; the caller asks the API for a new one.
      if ((status >= 400 && status < 500) || attempt >= attempts)
        throw new ApiError(status, 'download-failed', `download failed: ${status || ''} ${why}`.trim());
      await sleep(delay, this.o.signal);
      delay = Math.min(delay * 2, 10_000);
    }
  }
}
