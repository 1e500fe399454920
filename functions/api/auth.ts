/** Bearer-key authentication and per-key rate limiting. */
import type { MiddlewareHandler } from 'hono';
import type { ServiceContext } from '../shared/context.js';
import { findApiKey, hashKey, KEY_RE } from '../shared/keys-repo.js';
import { ProblemError } from '../shared/problem.js';
import type { ApiKeyItem } from '../shared/records.js';
import { TokenBuckets } from './rate-limit.js';

export type ApiEnv = { Variables: { tenant: string; keyId: string } };

/** Key lookups are cached briefly per instance; a revoked key stops working within this window. */
const CACHE_MS = 30_000;

export function authMiddleware(ctx: ServiceContext): MiddlewareHandler<ApiEnv> {
  const cache = new Map<string, { item: ApiKeyItem | null; until: number }>();
  const buckets = new TokenBuckets(ctx.cfg.rateLimit.ratePerSecond, ctx.cfg.rateLimit.burst, ctx.now);
  return async (c, next) => {
    const header = c.req.header('authorization');
    const challenge = { 'WWW-Authenticate': 'Bearer realm="falco"' };
    if (!header)
      throw new ProblemError(
        401,
        'unauthorized',
        'missing Authorization header; send "Authorization: Bearer <api key>"',
        {},
        challenge,
      );
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m)
      throw new ProblemError(
        401,
        'unauthorized',
        'Authorization header must be "Bearer <api key>"',
        {},
        challenge,
      );
    const key = m[1];
    if (!KEY_RE.test(key)) throw new ProblemError(401, 'unauthorized', 'malformed API key', {}, challenge);
    const h = hashKey(key);
    const t = ctx.now();
    let hit = cache.get(h);
    if (!hit || hit.until < t) {
      hit = { item: await findApiKey(ctx, key), until: t + CACHE_MS };
      if (cache.size > 5000) cache.clear();
      cache.set(h, hit);
    }
    if (!hit.item) throw new ProblemError(401, 'unauthorized', 'unknown or revoked API key', {}, challenge);
    const verdict = buckets.take(hit.item.keyId);
    c.header('RateLimit-Limit', String(ctx.cfg.rateLimit.burst));
    c.header('RateLimit-Remaining', String(verdict.remaining));
    if (!verdict.allowed) {
      throw new ProblemError(
        429,
        'rate-limited',
        `rate limit of ${ctx.cfg.rateLimit.ratePerSecond} requests/s (burst ${ctx.cfg.rateLimit.burst}) exceeded for this key; retry after ${verdict.retryAfter} s`,
        {},
        {
          'Retry-After': String(verdict.retryAfter),
        },
      );
    }
    c.set('tenant', hit.item.tenant);
    c.set('keyId', hit.item.keyId);
    await next();
  };
}
