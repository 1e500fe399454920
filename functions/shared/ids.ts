/**
 * Identifiers and their exact formats. This module owns every id format the service accepts: a value from a
 * request (job id, upload id, cursor contents, idempotency key) is checked here before it reaches an S3 key, a
 * DynamoDB key or a log line, and the S3 key builders (layout.ts) refuse anything that does not match.
 *
 * Resource ids: a 48-bit millisecond timestamp then 80 random bits, Crockford base32 (ULID layout), so ids sort
 * by creation time — the jobs listing paginates on them — and are unguessable.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function ulid(now = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const rnd = randomBytes(10);
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const byte of rnd) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  return time + out;
}

export type IdKind = 'job' | 'img' | 'upl';

export const newJobId = (now?: number) => `job_${ulid(now)}`;
export const newImageId = () => `img_${ulid()}`;
export const newUploadId = () => `upl_${ulid()}`;

const ULID = '[0-9A-HJKMNP-TV-Z]{26}';
/** Exact formats, anchored: `job_` / `img_` / `upl_` + 26 Crockford base32 characters (30 characters). */
export const ID_PATTERNS: Readonly<Record<IdKind, RegExp>> = Object.freeze({
  job: new RegExp(`^job_${ULID}$`),
  img: new RegExp(`^img_${ULID}$`),
  upl: new RegExp(`^upl_${ULID}$`),
});
export const ID_LENGTH = 30;
const ID_NAMES: Record<IdKind, string> = { job: 'job id', img: 'image id', upl: 'upload id' };

export function isId(kind: IdKind, id: unknown): id is string {
  return typeof id === 'string' && id.length === ID_LENGTH && ID_PATTERNS[kind].test(id);
}

/** How a format is described to customers (problem details, OpenAPI). */
export const describeId = (kind: IdKind) =>
  `a ${ID_NAMES[kind]} is "${kind}_" followed by 26 Crockford base32 characters (0-9, A-Z without I, L, O, U)`;

/** Tenant ids appear in S3 keys and DynamoDB keys: keep them to a safe alphabet with no separators. */
export const TENANT_RE = /^[a-z0-9][a-z0-9-]{1,62}$/;
export const isTenant = (t: unknown): t is string => typeof t === 'string' && TENANT_RE.test(t);

/**
 * Idempotency-Key header: 1-255 visible ASCII characters. The key itself is only ever stored hashed
 * (`IDEM#{tenant}#{sha256}`), so its content cannot reach a key path; the format keeps control characters and
 * multi-kilobyte values out of logs and hashes.
 */
export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;

/** Internal guard for key builders: a violation is a bug (requests are validated first), so it throws. */
export function assertId(kind: IdKind, id: unknown): asserts id is string {
  if (!isId(kind, id)) throw new Error(`refusing to build a key from an invalid ${ID_NAMES[kind]}`);
}
export function assertTenant(t: unknown): asserts t is string {
  if (!isTenant(t)) throw new Error('refusing to build a key from an invalid tenant id');
}
