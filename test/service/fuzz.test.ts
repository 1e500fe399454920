/**
 * Bounded, seeded fuzz of the API on the local stack (the long run is `npm run bench -- fuzz`): every valid
 * image is accepted, everything else is a 2xx or a precise 4xx problem+json, and nothing is a 5xx.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { FUZZ_ENV, judge, makeCase, makeSeeds, rng, type Seeds } from '../fuzz/cases.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261130);
const CASES = Number(process.env.FUZZ_CASES ?? 300);

let stack: LocalStack;
let seeds: Seeds;

beforeAll(async () => {
  stack = await startLocalStack({ port: 0, webPage: false, env: FUZZ_ENV });
  seeds = await makeSeeds();
});

afterAll(async () => {
  await stack?.stop();
});

it(`${CASES} seeded hostile requests (seed ${SEED}): 0 × 5xx, valid images accepted, precise problems`, async () => {
  const r = rng(SEED);
  const failures: string[] = [];
  const byStatus: Record<string, number> = {};
  for (let n = 0; n < CASES; n++) {
    const c = makeCase(r, seeds, n);
    const res = await fetch(stack.url + c.path, {
      method: c.method,
      headers: { authorization: `Bearer ${stack.apiKey}`, ...c.headers },
      body: c.body,
    });
    const text = await res.text();
    byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
    const v = judge(c, res.status, res.headers.get('content-type'), text);
    if (!v.ok) failures.push(`#${n} ${c.kind} ${c.method} ${c.path.slice(0, 60)}: ${v.why}`);
  }
  expect(failures).toEqual([]);
  expect(byStatus['202']).toBeGreaterThan(CASES / 10); // the generator does produce valid images
  expect(Object.keys(byStatus).filter((s) => Number(s) >= 500)).toEqual([]);
}, 300_000);
