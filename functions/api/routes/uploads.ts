import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import type { ServiceContext } from '../../shared/context.js';
import { newUploadId } from '../../shared/ids.js';
import { uploadKey } from '../../shared/layout.js';
import { ProblemError } from '../../shared/problem.js';
import type { ApiEnv } from '../auth.js';
import { CreateUploadSchema, problemResponses, UploadSchema } from '../schemas.js';

const route = createRoute({
  method: 'post',
  path: '/v1/uploads',
  tags: ['Uploads'],
  summary: 'Get a presigned upload for a large image',
  description:
    'Returns a presigned S3 POST limited to the declared content type and the size limit. Upload the file, then reference `id` in POST /v1/jobs. ' +
    'The content is validated (magic bytes, pixel limit, decode) when the job is created; unused uploads expire within a day.',
  security: [{ bearer: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: CreateUploadSchema } } } },
  responses: {
    201: { description: 'Upload target', content: { 'application/json': { schema: UploadSchema } } },
    ...problemResponses(400, 401, 413, 422, 429),
  },
});

export function registerUploads(app: OpenAPIHono<ApiEnv>, ctx: ServiceContext): void {
  app.openapi(route, async (c) => {
    const body = c.req.valid('json');
    const max = ctx.cfg.limits.maxUploadBytes;
    if (body.bytes !== undefined && body.bytes > max)
      throw new ProblemError(
        413,
        'image-too-large',
        `declared size ${body.bytes} bytes exceeds the ${max}-byte limit`,
      );
    const id = newUploadId();
    const expires = ctx.cfg.presignSeconds;
    const post = await createPresignedPost(ctx.clients.s3, {
      Bucket: ctx.cfg.uploadsBucket,
      Key: uploadKey(c.get('tenant'), id),
      // S3 itself enforces these: wrong type or size is refused at upload time.
      Conditions: [
        ['content-length-range', 1, max],
        ['eq', '$Content-Type', body.contentType],
      ],
      Fields: { 'Content-Type': body.contentType },
      Expires: expires,
    });
    return c.json(
      {
        id,
        method: 'POST' as const,
        url: post.url,
        fields: post.fields,
        maxBytes: max,
        expiresAt: new Date(ctx.now() + expires * 1000).toISOString(),
      },
      201,
    );
  });
}
