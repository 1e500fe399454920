import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { ServiceContext } from '../../shared/context.js';
import { countUsage } from '../../shared/usage-repo.js';
import type { ApiEnv } from '../auth.js';
import { problemResponses, UsageQuery, UsageSchema } from '../schemas.js';

const route = createRoute({
  method: 'get',
  path: '/v1/usage',
  tags: ['Usage'],
  summary: 'Billable images of a month',
  description:
    'Counts images that completed successfully in jobs created in the month (UTC). Failed images are never billed.',
  security: [{ bearer: [] }],
  request: { query: UsageQuery },
  responses: {
    200: { description: 'Usage', content: { 'application/json': { schema: UsageSchema } } },
    ...problemResponses(400, 401, 429),
  },
});

export function registerUsage(app: OpenAPIHono<ApiEnv>, ctx: ServiceContext): void {
  app.openapi(route, async (c) => {
    const month = c.req.valid('query').month ?? new Date(ctx.now()).toISOString().slice(0, 7);
    return c.json({ month, billableImages: await countUsage(ctx, c.get('tenant'), month) }, 200);
  });
}
