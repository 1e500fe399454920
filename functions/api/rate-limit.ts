/**
 * Per-key token bucket, in memory per process (per Lambda instance).
 *
 * Why not DynamoDB: a shared bucket costs a conditional write (≈5–10 ms and 1 WCU) on every request, doubling
 * the cost of cheap GETs. Per-instance buckets are free; the trade-off is that the effective limit scales with
 * the number of warm instances serving a key (Lambda reuses instances, so a single client mostly hits a few).
 * This is abuse protection, not billing — the account-wide ceiling is API Gateway's stage throttling.
 */
export interface Verdict {
  allowed: boolean;
  remaining: number;
  /** Seconds until one token is available (for Retry-After). */
  retryAfter: number;
}

export class TokenBuckets {
  private buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): Verdict {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: t };
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.ratePerSecond);
    b.at = t;
    if (this.buckets.size > 10_000) this.buckets.clear(); // bounded memory; resets are harmless
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, remaining: Math.floor(b.tokens), retryAfter: 0 };
    }
    return {
      allowed: false,
      remaining: 0,
      retryAfter: Math.max(1, Math.ceil((1 - b.tokens) / this.ratePerSecond)),
    };
  }
}
