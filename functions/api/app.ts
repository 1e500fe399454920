/** The Hono application: same instance behind API Gateway (lambda.ts) and in the local stack. */
import { OpenAPIHono } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import type { Context } from 'hono';
import type { ServiceContext } from '../shared/context.js';
import { PROBLEM_CONTENT_TYPE, ProblemError } from '../shared/problem.js';
import { errFields } from '../shared/logger.js';
import { authMiddleware, type ApiEnv } from './auth.js';
import { registerDocs } from './docs.js';
import { registerJobs } from './routes/jobs.js';
import { registerUploads } from './routes/uploads.js';
import { registerUsage } from './routes/usage.js';
import { ASSUMED_ATTEMPTS_PER_FACE, OPTION_RANGES } from '../shared/limits.js';

const OPENAPI_INFO = {
  title: 'FALCO face anonymization API',
  version: '1.0.0',
  description:
    'Upload photos, get them back with every face replaced by a synthetic one that keeps pose and expression but not identity. ' +
    'Jobs are asynchronous: poll GET /v1/jobs/{id} or receive a signed webhook (Standard Webhooks). Billed per successfully anonymized image.',
};

function problemResponse(c: Context, err: ProblemError): Response {
  for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
  return c.body(JSON.stringify(err.toProblem(c.req.path)), err.status as never, {
    'Content-Type': PROBLEM_CONTENT_TYPE,
  });
}

/** 404 problem+json for a path no route serves (also used by the local stack's outer router). */
export function notFoundResponse(c: Context): Response {
  // The path is not echoed in full: it may be kilobytes of anything.
  const path = c.req.path.length > 100 ? `${c.req.path.slice(0, 100)}…` : c.req.path;
  return problemResponse(c, new ProblemError(404, 'not-found', `no route for ${c.req.method} ${path}`));
}

export function createApp(ctx: ServiceContext): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    // zod failures of declared params/query/json become problem+json with every issue listed.
    defaultHook: (result, c) => {
      if (!result.success) {
        const errors = result.error.issues.map((i) => ({
          path: [result.target, ...i.path.map(String)].join('.'),
          message: i.message,
        }));
        return problemResponse(
          c,
          new ProblemError(
            result.target === 'json' ? 422 : 400,
            'invalid-request',
            errors.map((e) => `${e.path}: ${e.message}`).join('; '),
            { errors },
          ),
        );
      }
    },
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'API key: `Authorization: Bearer fk_live_…`',
  });

  app.onError((err, c) => {
    if (err instanceof ProblemError) {
      if (err.status >= 500) ctx.log.error('request failed', { path: c.req.path, code: err.code });
      return problemResponse(c, err);
    }
    // hono's bodyLimit and malformed-JSON errors arrive as HTTPException-like objects with a status.
    const status = (err as { status?: number }).status;
    if (status && status >= 400 && status < 500)
      return problemResponse(c, new ProblemError(status, 'bad-request', err.message || 'bad request'));
    ctx.log.error('unhandled error', { path: c.req.path, method: c.req.method, ...errFields(err) });
    return problemResponse(
      c,
      new ProblemError(500, 'internal', 'internal error; the request may be retried'),
    );
  });
  app.notFound(notFoundResponse);

  // The enforced limits are part of the document (`x-limits`): the option ranges are also in the schemas;
  // the resource limits are this deployment's (functions/shared/limits.ts).
  const document = () => ({
    ...app.getOpenAPIDocument({ openapi: '3.0.3', info: OPENAPI_INFO }),
    'x-limits': {
      ...ctx.cfg.limits,
      assumedAttemptsPerFace: ASSUMED_ATTEMPTS_PER_FACE,
      options: OPTION_RANGES,
    },
  });
  app.get('/openapi.json', (c) => c.json(document()));
  registerDocs(app, () => document() as never);
  app.get('/healthz', (c) => c.json({ ok: true }));

  app.use('/v1/*', authMiddleware(ctx));
  app.use(
    '/v1/jobs',
    bodyLimit({
      maxSize: ctx.cfg.limits.maxInlineTotalBytes + 64 * 1024,
      onError: () => {
        throw new ProblemError(
          413,
          'request-too-large',
          `request body exceeds ${ctx.cfg.limits.maxInlineTotalBytes} bytes of inline images; use POST /v1/uploads for large files`,
        );
      },
    }),
  );
  registerUploads(app, ctx);
  registerJobs(app, ctx);
  registerUsage(app, ctx);
  return app;
}
