/** Job routes. Every lookup is scoped to the caller's tenant; another tenant's job is indistinguishable from none (404). */
import { createHash } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { wakeFleet } from '../../shared/fleet.js';
import type { Context } from 'hono';
import type { ServiceContext } from '../../shared/context.js';
import { describeId, IDEMPOTENCY_KEY_RE, isId, newImageId, newJobId } from '../../shared/ids.js';
import { inputKey, inputPrefix, reportKey, resultPrefix, uploadKey } from '../../shared/layout.js';
import { acquireInFlight, releaseInFlight, takeJobCreation } from '../../shared/admission.js';
import { ASSUMED_ATTEMPTS_PER_FACE, FALCO_DEFAULT_STEPS } from '../../shared/limits.js';
import { ProblemError } from '../../shared/problem.js';
import {
  jobPk,
  tenantGsi,
  imageSk,
  type IdempotencyItem,
  type ImageItem,
  type JobItem,
} from '../../shared/records.js';
import {
  claimIdempotencyKey,
  completeIdempotencyKey,
  deleteImageItems,
  discardPartialJob,
  getJobWithImages,
  listJobs,
  markJobDeleted,
  markJobEnqueued,
  putJob,
  releaseIdempotencyKey,
} from '../../shared/jobs-repo.js';
import { enqueueImages } from '../../shared/lifecycle.js';
import { TERMINAL_IMAGE } from '../../shared/records.js';
import { deleteObject, deletePrefix, getObjectBytes, putObject } from '../../shared/storage.js';
import { CONTENT_TYPES } from '../../shared/layout.js';
import { checkWebhookUrl } from '../../webhooks/ssrf.js';
import type { AnonymizeOptions } from '../../pipeline/types.js';
import type { ApiEnv } from '../auth.js';
import { validateImage, type ValidatedImage } from '../validate.js';
import { jobSummary, jobView } from '../job-view.js';
import {
  CreateJobJsonSchema,
  CreateJobMultipartSchema,
  JobIdParam,
  JobListSchema,
  JobSchema,
  ListQuery,
  OptionsSchema,
  problemResponses,
} from '../schemas.js';

interface IncomingImage {
  source: { kind: 'inline'; bytes: Uint8Array } | { kind: 'upload'; uploadId: string };
  filename?: string;
  /** Stable content identity for the idempotency hash. */
  identity: string;
}

interface ParsedCreate {
  images: IncomingImage[];
  options: AnonymizeOptions;
  webhook?: string;
}

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

function zodProblem(err: z.ZodError, where: string): ProblemError {
  const errors = err.issues.map((i) => ({
    path: [where, ...i.path.map(String)].join('.'),
    message: i.message,
  }));
  const detail = errors.map((e) => `${e.path}: ${e.message}`).join('; ');
  // An id that is not of its exact format names nothing that can exist: a malformed request (400), refused
  // before it reaches a key or a table.
  if (err.issues.some((i) => i.path[i.path.length - 1] === 'uploadId'))
    return new ProblemError(400, 'invalid-id', detail, { errors });
  return new ProblemError(422, 'invalid-request', detail, { errors });
}

/** A multipart text field given at most once (a repeated field is refused, not silently picked). */
function singleField(form: Record<string, unknown>, name: string): string | undefined {
  const v = form[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v))
    throw new ProblemError(
      422,
      'invalid-request',
      `the multipart field "${name}" was sent ${v.length} times; send it once`,
    );
  if (typeof v !== 'string')
    throw new ProblemError(
      422,
      'invalid-request',
      `the multipart field "${name}" must be a text field, not a file`,
    );
  return v;
}

async function parseCreate(c: Context<ApiEnv>, ctx: ServiceContext): Promise<ParsedCreate> {
  const type = (c.req.header('content-type') ?? '').toLowerCase();
  const limits = ctx.cfg.limits;
  if (type.startsWith('application/json')) {
    let raw: unknown;
    try {
      raw = await c.req.json();
    } catch {
      throw new ProblemError(400, 'malformed-json', 'request body is not valid JSON');
    }
    const parsed = CreateJobJsonSchema.safeParse(raw);
    if (!parsed.success) throw zodProblem(parsed.error, 'body');
    return {
      images: parsed.data.images.map((i) => ({
        source: { kind: 'upload' as const, uploadId: i.uploadId },
        identity: `upload:${i.uploadId}`,
      })),
      options: parsed.data.options ?? {},
      webhook: parsed.data.webhook,
    };
  }
  if (type.startsWith('multipart/form-data')) {
    let form: Record<string, string | File | (string | File)[]>;
    try {
      form = await c.req.parseBody({ all: true });
    } catch (err) {
      throw new ProblemError(
        400,
        'malformed-multipart',
        `multipart body cannot be parsed: ${(err as Error).message}`,
      );
    }
    const unknown = Object.keys(form).filter((k) => !['image', 'options', 'webhook'].includes(k));
    if (unknown.length)
      throw new ProblemError(
        422,
        'invalid-request',
        `unknown multipart field(s): ${unknown.join(', ')}; expected image, options, webhook`,
      );
    const files = ([] as (string | File)[]).concat(form.image ?? []);
    if (files.length === 0)
      throw new ProblemError(422, 'invalid-request', 'multipart body has no "image" file field');
    const images: IncomingImage[] = [];
    let total = 0;
    for (const [n, f] of files.entries()) {
      if (typeof f === 'string')
        throw new ProblemError(
          422,
          'invalid-request',
          `image ${n + 1} must be a file part, not a text field`,
        );
      if (f.size > limits.maxInlineBytes) {
        throw new ProblemError(
          413,
          'image-too-large',
          `image ${n + 1} is ${f.size} bytes; inline images are limited to ${limits.maxInlineBytes} bytes (use POST /v1/uploads for larger files)`,
        );
      }
      total += f.size;
      const bytes = new Uint8Array(await f.arrayBuffer());
      images.push({
        source: { kind: 'inline', bytes },
        filename: f.name?.slice(0, 200) || undefined,
        identity: `sha256:${sha256(bytes)}`,
      });
    }
    if (total > limits.maxInlineTotalBytes)
      throw new ProblemError(
        413,
        'request-too-large',
        `inline images total ${total} bytes; the limit is ${limits.maxInlineTotalBytes} bytes`,
      );
    let options: AnonymizeOptions = {};
    const optionsField = singleField(form, 'options');
    const webhookField = singleField(form, 'webhook');
    if (optionsField !== undefined) {
      let raw: unknown;
      try {
        raw = JSON.parse(optionsField);
      } catch {
        throw new ProblemError(422, 'invalid-request', 'options field is not valid JSON');
      }
      const parsed = OptionsSchema.safeParse(raw);
      if (!parsed.success) throw zodProblem(parsed.error, 'options');
      options = parsed.data;
    }
    return { images, options, webhook: webhookField || undefined };
  }
  throw new ProblemError(
    415,
    'unsupported-content-type',
    `Content-Type must be application/json or multipart/form-data, got "${type || 'none'}"`,
  );
}

function canonicalHash(p: ParsedCreate): string {
  const sortKeys = (o: object) =>
    Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
  return sha256(
    JSON.stringify({
      images: p.images.map((i) => i.identity),
      options: sortKeys(p.options),
      webhook: p.webhook ?? null,
    }),
  );
}

const createDoc = createRoute({
  method: 'post',
  path: '/v1/jobs',
  tags: ['Jobs'],
  summary: 'Create an anonymization job',
  description:
    'Images are given either by upload id (JSON) or inline (multipart/form-data, small images). Each image is checked by content ' +
    '(magic bytes, byte and pixel limits, a full decode) before anything is stored or queued. With an `Idempotency-Key` header, ' +
    'repeating the same request returns the same job; reusing the key with a different body is a 409.',
  security: [{ bearer: [] }],
  request: {
    headers: z.object({
      'Idempotency-Key': z.string().max(255).optional().openapi({
        description: 'Same key + same body → same job; same key + different body → 409. Remembered 24 h.',
      }),
    }),
    body: {
      required: true,
      content: {
        'application/json': { schema: CreateJobJsonSchema },
        'multipart/form-data': { schema: CreateJobMultipartSchema },
      },
    },
  },
  responses: {
    202: { description: 'Job accepted', content: { 'application/json': { schema: JobSchema } } },
    ...problemResponses(400, 401, 404, 409, 413, 415, 422, 429),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/jobs/{id}',
  tags: ['Jobs'],
  summary: 'Get a job',
  description: 'Status, per-image progress, results as short-lived presigned URLs, and per-face reports.',
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    200: { description: 'Job', content: { 'application/json': { schema: JobSchema } } },
    ...problemResponses(401, 404, 429),
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/v1/jobs',
  tags: ['Jobs'],
  summary: 'List jobs, newest first',
  security: [{ bearer: [] }],
  request: { query: ListQuery },
  responses: {
    200: { description: 'A page of jobs', content: { 'application/json': { schema: JobListSchema } } },
    ...problemResponses(400, 401, 429),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/jobs/{id}',
  tags: ['Jobs'],
  summary: 'Erase a job now',
  description: 'Deletes inputs, results and reports immediately. Usage already billed stays on the invoice.',
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: { 204: { description: 'Erased' }, ...problemResponses(401, 404, 429) },
});

async function loadOwnedJob(ctx: ServiceContext, tenant: string, id: string) {
  // An id that is not of the exact format cannot exist; it is not echoed back (it may be kilobytes of anything).
  if (!isId('job', id)) throw new ProblemError(404, 'not-found', `job not found (${describeId('job')})`);
  const data = await getJobWithImages(ctx, id);
  if (!data || data.job.tenant !== tenant || data.job.status === 'deleted')
    throw new ProblemError(404, 'not-found', `job ${id} not found`);
  return data;
}

function encodeCursor(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

function decodeCursor(cursor: string, tenant: string): Record<string, unknown> {
  let key: Record<string, unknown>;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new ProblemError(400, 'invalid-cursor', 'cursor is not one returned by this API');
  }
  // Every part of the key is checked against its exact format: the cursor goes straight into a table query.
  const ok =
    key !== null &&
    typeof key === 'object' &&
    !Array.isArray(key) &&
    Object.keys(key).length === 4 &&
    key.gsi1pk === tenantGsi(tenant) &&
    isId('job', key.gsi1sk) &&
    key.pk === jobPk(key.gsi1sk) &&
    key.sk === 'JOB';
  if (!ok)
    throw new ProblemError(400, 'invalid-cursor', 'cursor is not one returned by this API for this key');
  return key;
}

export function registerJobs(app: OpenAPIHono<ApiEnv>, ctx: ServiceContext): void {
  app.openAPIRegistry.registerPath(createDoc);

  app.post('/v1/jobs', async (c) => {
    const tenant = c.get('tenant');
    const parsed = await parseCreate(c, ctx);
    const limits = ctx.cfg.limits;
    if (parsed.images.length > limits.maxImagesPerJob) {
      throw new ProblemError(
        422,
        'too-many-images',
        `a job holds at most ${limits.maxImagesPerJob} images; got ${parsed.images.length}`,
      );
    }
    if (parsed.webhook) {
      if (parsed.webhook.length > 2048)
        throw new ProblemError(
          422,
          'invalid-webhook',
          `webhook URL is ${parsed.webhook.length} characters; at most 2048`,
        );
      const why = checkWebhookUrl(parsed.webhook, ctx.cfg.local);
      if (why) throw new ProblemError(422, 'invalid-webhook', why);
    }
    // Compute budget: at least one face at the requested steps must fit; the worker checks the real face count.
    const perFace = (parsed.options.steps ?? FALCO_DEFAULT_STEPS) * ASSUMED_ATTEMPTS_PER_FACE;
    if (perFace > limits.maxComputeSteps)
      throw new ProblemError(
        422,
        'compute-budget-exceeded',
        `one face would need up to ${perFace} optimisation steps (${parsed.options.steps ?? FALCO_DEFAULT_STEPS} steps × ${ASSUMED_ATTEMPTS_PER_FACE} attempts); the compute budget per image is ${limits.maxComputeSteps} steps`,
        { limit: 'maxComputeSteps', value: perFace, max: limits.maxComputeSteps },
      );
    const bodyHash = canonicalHash(parsed);
    const idemKey = c.req.header('idempotency-key');
    if (idemKey !== undefined && !IDEMPOTENCY_KEY_RE.test(idemKey))
      throw new ProblemError(
        400,
        'invalid-idempotency-key',
        `Idempotency-Key must be 1-255 visible ASCII characters (got ${idemKey.length} characters)`,
      );
    const idemPk = idemKey ? `IDEM#${tenant}#${sha256(idemKey)}` : undefined;
    const now = ctx.now();
    let jobId = newJobId(now);

    const replay = async (existing: IdempotencyItem) => {
      if (existing.bodyHash !== bodyHash) {
        throw new ProblemError(
          409,
          'idempotency-key-reused',
          'this Idempotency-Key was already used with a different request body',
        );
      }
      const data = existing.state === 'in-progress' ? null : await getJobWithImages(ctx, existing.jobId);
      if (!data || data.job.status === 'deleted') {
        // In progress: the first request still runs (its lock expires after IDEMPOTENCY_LOCK_SECONDS if it died).
        const wait = existing.lockUntil ? Math.max(1, existing.lockUntil - Math.floor(ctx.now() / 1000)) : 1;
        c.header('Retry-After', String(wait));
        throw new ProblemError(
          409,
          'idempotency-in-progress',
          'a request with this Idempotency-Key is still being processed; retry shortly',
        );
      }
      c.header('Idempotent-Replayed', 'true');
      c.header('Location', `/v1/jobs/${existing.jobId}`);
      return c.json(await jobView(ctx, data.job, data.images), 202);
    };
    const rate = await takeJobCreation(ctx, tenant);
    if (!rate.ok)
      throw new ProblemError(
        429,
        'job-rate-limited',
        `this tenant may create ${rate.limit} jobs per minute and has created ${rate.current} in the current minute; retry after ${rate.retryAfter} s`,
        { limit: 'jobsPerMinute', value: rate.current, max: rate.limit },
        { 'Retry-After': String(rate.retryAfter) },
      );
    if (idemPk) {
      const claim = await claimIdempotencyKey(ctx, {
        pk: idemPk,
        sk: 'IDEM',
        tenant,
        bodyHash,
        jobId,
        createdAt: new Date(now).toISOString(),
        state: 'in-progress',
        // Must outlive this function (API timeout 29 s < 60 s default): an expired lock means a dead request.
        lockUntil: Math.floor(now / 1000) + ctx.cfg.idempotencyLockSeconds,
        ttl: Math.floor(now / 1000) + ctx.cfg.idempotencyHours * 3600,
      });
      if (claim.kind === 'held') return replay(claim.item);
      // Taken over from a request that died before writing its job: create that job, under the id it recorded.
      jobId = claim.jobId;
      if (claim.resumed) {
        // What the dead request stored before dying (image items, originals) is not this job's: remove it.
        const partial = await discardPartialJob(ctx, jobId);
        await deletePrefix(ctx, ctx.cfg.uploadsBucket, inputPrefix(tenant, jobId));
        ctx.log.warn('idempotency key taken over from a dead request', { jobId, tenant, partial });
      }
    }

    let stored = 'nothing' as 'nothing' | 'inputs' | 'job';
    try {
      // 1. Validate everything before storing or queueing anything.
      const validated: Array<{ img: IncomingImage; bytes: Uint8Array; info: ValidatedImage }> = [];
      for (const [n, img] of parsed.images.entries()) {
        const label = `image ${n + 1}${img.filename ? ` (${img.filename})` : ''}`;
        let bytes: Uint8Array;
        if (img.source.kind === 'inline') bytes = img.source.bytes;
        else {
          const got = await getObjectBytes(
            ctx,
            ctx.cfg.uploadsBucket,
            uploadKey(tenant, img.source.uploadId),
            limits.maxUploadBytes,
          );
          if (!got)
            throw new ProblemError(
              404,
              'upload-not-found',
              `${label}: upload ${img.source.uploadId} not found (not uploaded yet, expired, or already used)`,
            );
          bytes = got;
        }
        const info = await validateImage(
          bytes,
          {
            maxBytes: img.source.kind === 'inline' ? limits.maxInlineBytes : limits.maxUploadBytes,
            maxPixels: limits.maxPixels,
            maxSide: limits.maxSide,
          },
          label,
        );
        validated.push({ img, bytes, info });
      }

      // Admission: the job's images all take an in-flight slot, or the job is refused (nothing stored yet).
      const admitted = await acquireInFlight(ctx, tenant, validated.length);
      if (!admitted.ok)
        throw new ProblemError(
          429,
          'too-many-images-in-flight',
          `this tenant may have ${admitted.limit} images queued or processing at once; ${admitted.current} are, and this job adds ${validated.length}. Retry when some have finished`,
          { limit: 'maxInFlightImages', value: admitted.current, max: admitted.limit },
          { 'Retry-After': '30' },
        );
      // 2. Store inputs, then items, then enqueue.
      const items: ImageItem[] = [];
      let job: JobItem;
      try {
        stored = 'inputs';
        const ttl = Math.floor(now / 1000) + ctx.cfg.retentionDays * 86400;
        const iso = new Date(now).toISOString();
        for (const [index, v] of validated.entries()) {
          const imageId = newImageId();
          const key = inputKey(tenant, jobId, imageId);
          await putObject(ctx, ctx.cfg.uploadsBucket, key, v.bytes, CONTENT_TYPES[v.info.format]);
          if (v.img.source.kind === 'upload')
            await deleteObject(ctx, ctx.cfg.uploadsBucket, uploadKey(tenant, v.img.source.uploadId));
          items.push({
            pk: jobPk(jobId),
            sk: imageSk(imageId),
            jobId,
            imageId,
            tenant,
            index,
            status: 'queued',
            progress: 0,
            filename: v.img.filename,
            inputKey: key,
            inputBytes: v.info.bytes,
            inputFormat: v.info.format,
            width: v.info.width,
            height: v.info.height,
            outputFormat: parsed.options.format ?? v.info.format,
            updatedAt: iso,
            ttl,
          });
        }
        job = {
          pk: jobPk(jobId),
          sk: 'JOB',
          gsi1pk: tenantGsi(tenant),
          gsi1sk: jobId,
          jobId,
          tenant,
          status: 'queued',
          createdAt: iso,
          updatedAt: iso,
          billingMonth: iso.slice(0, 7),
          imageCount: items.length,
          options: parsed.options,
          webhookUrl: parsed.webhook,
          webhookStatus: parsed.webhook ? 'pending' : 'none',
          idempotencyKeyHash: idemKey ? sha256(idemKey) : undefined,
          enqueuePending: true,
          ttl,
        };
        await putJob(ctx, job, items);
      } catch (err) {
        // Nothing was queued: give the slots back.
        await releaseInFlight(ctx, tenant, validated.length).catch(() => undefined);
        throw err;
      }
      stored = 'job';
      // From here each image releases its own slot when it becomes terminal (enqueue failures included).
      await enqueueImages(ctx, job, items);
      await markJobEnqueued(ctx, jobId);
      if (idemPk) await completeIdempotencyKey(ctx, idemPk, jobId);
      await wakeFleet(ctx); // a fleet at zero starts booting now, not at the next scaling alarm (fleet.ts)
      ctx.log.info('job created', {
        jobId,
        tenant,
        images: items.length,
        inline: parsed.images[0]?.source.kind === 'inline',
      });
      c.header('Location', `/v1/jobs/${jobId}`);
      return c.json(await jobView(ctx, job, items), 202);
    } catch (err) {
      if (stored === 'job') {
        // The job exists and runs: the key must keep pointing at it, or a retry would create a second job.
        if (idemPk) await completeIdempotencyKey(ctx, idemPk, jobId).catch(() => undefined);
      } else {
        // No job: free the key so a corrected request can reuse it, and drop any original already stored
        // (nothing would ever process or delete it).
        if (idemPk) await releaseIdempotencyKey(ctx, idemPk, jobId).catch(() => undefined);
        if (stored === 'inputs')
          await deletePrefix(ctx, ctx.cfg.uploadsBucket, inputPrefix(tenant, jobId)).catch(() => undefined);
      }
      throw err;
    }
  });

  app.openapi(getRoute, async (c) => {
    const { job, images } = await loadOwnedJob(ctx, c.get('tenant'), c.req.valid('param').id);
    return c.json(await jobView(ctx, job, images), 200);
  });

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const tenant = c.get('tenant');
    const page = await listJobs(
      ctx,
      tenant,
      q.limit ?? 20,
      q.cursor ? decodeCursor(q.cursor, tenant) : undefined,
    );
    return c.json(
      { data: page.jobs.map(jobSummary), nextCursor: page.nextKey ? encodeCursor(page.nextKey) : null },
      200,
    );
  });

  app.openapi(deleteRoute, async (c) => {
    const tenant = c.get('tenant');
    const { job, images } = await loadOwnedJob(ctx, tenant, c.req.valid('param').id);
    // Tombstone first so a worker or completion racing with us discards what it produces.
    await markJobDeleted(ctx, job.jobId);
    // An erased job frees its Idempotency-Key: a retry with it creates a new job instead of a 409 forever.
    if (job.idempotencyKeyHash)
      await releaseIdempotencyKey(ctx, `IDEM#${tenant}#${job.idempotencyKeyHash}`, job.jobId);
    await deletePrefix(ctx, ctx.cfg.uploadsBucket, inputPrefix(tenant, job.jobId));
    await deletePrefix(ctx, ctx.cfg.resultsBucket, resultPrefix(tenant, job.jobId));
    for (const i of images)
      await deleteObject(ctx, ctx.cfg.resultsBucket, reportKey(tenant, job.jobId, i.imageId));
    await deleteImageItems(
      ctx,
      job.jobId,
      images.map((i) => i.imageId),
    );
    // Images erased before they finished never reach a terminal transition: their slots are given back here.
    // (A worker finishing one concurrently finds its item gone and its conditional transition fails: no double release.)
    await releaseInFlight(ctx, tenant, images.filter((i) => !TERMINAL_IMAGE.includes(i.status)).length);
    ctx.log.info('job erased', { jobId: job.jobId, tenant });
    return c.body(null, 204);
  });
}
