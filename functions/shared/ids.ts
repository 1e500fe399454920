/**
 * Identifiers: a 48-bit millisecond timestamp then 80 random bits, Crockford base32 (ULID layout), so ids sort
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

export const newJobId = (now?: number) => `job_${ulid(now)}`;
export const newImageId = () => `img_${ulid()}`;
export const newUploadId = () => `upl_${ulid()}`;

const ID_RE = /^(job|img|upl)_[0-9A-HJKMNP-TV-Z]{26}$/;
export function isId(kind: 'job' | 'img' | 'upl', id: string): boolean {
  return ID_RE.test(id) && id.startsWith(kind + '_');
}

/** Tenant ids appear in S3 keys: keep them to a safe alphabet. */
export const TENANT_RE = /^[a-z0-9][a-z0-9-]{1,62}$/;
