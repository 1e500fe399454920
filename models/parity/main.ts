/**
 * `npm run parity -- <dir> [case-name ...]`: runs every case of a cases.json fixtures directory
 * against our networks and prints one line per case (max error, cosine, pass/fail). Cases marked
 * `slow` run only with FALCO_SLOW=1. Exits non-zero when any case fails or has no handler.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { runParity } from './run.js';

const [dirArg, ...only] = process.argv.slice(2);
if (!dirArg) {
  console.error('usage: npm run parity -- <fixtures dir> [case names...]');
  process.exit(2);
}
const dir = resolve(dirArg);
if (!existsSync(resolve(dir, 'cases.json'))) {
  console.error(`${dir} has no cases.json`);
  process.exit(2);
}
const results = await runParity(dir, {
  only: only.length ? only : undefined,
  slow: process.env.FALCO_SLOW === '1',
  log: (m) => console.error(`  ${m}`),
  onResult: (r) => console.log(r.line),
});
const failed = results.filter((r) => r.status === 'fail');
const skipped = results.filter((r) => r.status === 'skip').length;
console.log(
  `${results.length - failed.length - skipped} passed, ${failed.length} failed, ${skipped} skipped`,
);
process.exit(failed.length ? 1 : 0);
