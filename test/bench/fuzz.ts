/**
 * `npm run bench -- fuzz [cases] [seed] [concurrency]`: the long seeded fuzz of the API on the local stack
 * (issue #11; cases from test/fuzz/cases.ts, default 10 000, 8 at a time). Prints one JSON summary: responses by
 * status code and by case kind, oracle failures (5xx, valid image refused, imprecise problem), crashes (requests
 * that got no HTTP answer), and the process RSS after a warm-up vs after the run (both after a GC; the jobs the
 * run created are erased first so the in-memory DynamoDB emulator's data does not count as a leak).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startLocalStack } from '../../functions/local/stack.js';
import { FUZZ_ENV, judge, makeCase, makeSeeds, rng } from '../fuzz/cases.js';
import { report } from './report.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function settle(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 200));
  }
  return process.memoryUsage().rss;
}

export default async function fuzz(args: string[]): Promise<void> {
  const total = Number(args[0] ?? 10_000);
  const seed = Number(args[1] ?? 20261130);
  const concurrency = Number(args[2] ?? 8);
  const warmup = Math.min(500, Math.floor(total / 10));
  const stack = await startLocalStack({ port: 0, webPage: false, env: FUZZ_ENV });
  const seeds = await makeSeeds();
  const r = rng(seed);
  const byStatus: Record<string, number> = {};
  const byKind: Record<string, Record<string, number>> = {};
  const failures: string[] = [];
  const created: string[] = [];
  let crashes = 0;
  let rssWarm = 0;
  const t0 = performance.now();
  try {
    let next = 0;
    const worker = async () => {
      for (;;) {
        const n = next++;
        if (n >= total) return;
        if (n === warmup) rssWarm = await settle();
        const c = makeCase(r, seeds, n);
        let res: Response;
        let text: string;
        try {
          res = await fetch(stack.url + c.path, {
            method: c.method,
            headers: { authorization: `Bearer ${stack.apiKey}`, ...c.headers },
            body: c.body,
          });
          text = await res.text();
        } catch (err) {
          crashes++;
          failures.push(`#${n} ${c.kind}: no answer (${(err as Error).message})`);
          continue;
        }
        byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
        (byKind[c.kind] ??= {})[res.status] = (byKind[c.kind]![res.status] ?? 0) + 1;
        if (res.status === 202) created.push((JSON.parse(text) as { id: string }).id);
        const v = judge(c, res.status, res.headers.get('content-type'), text);
        if (!v.ok) failures.push(`#${n} ${c.kind} ${c.method} ${c.path.slice(0, 60)}: ${v.why}`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = (performance.now() - t0) / 1000;
    for (const id of new Set(created))
      await fetch(`${stack.url}/v1/jobs/${id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${stack.apiKey}` },
      });
    const rssEnd = await settle();
    const fivexx = Object.entries(byStatus)
      .filter(([s]) => Number(s) >= 500)
      .reduce((a, [, k]) => a + k, 0);
    console.log(
      JSON.stringify({
        bench: 'fuzz',
        seed,
        inputs: total,
        concurrency,
        seconds: Number(seconds.toFixed(1)),
        byStatus,
        byKind,
        fivexx,
        crashes,
        oracleFailures: failures.length,
        failures: failures.slice(0, 20),
        rssWarmMB: Math.round(rssWarm / 2 ** 20),
        rssEndMB: Math.round(rssEnd / 2 ** 20),
        rssGrowth: Number((rssEnd / rssWarm - 1).toFixed(3)),
      }),
    );
    report('fuzz', 'inputs', total, 'requests', { fivexx, crashes, oracleFailures: failures.length });
    report('fuzz', 'rss-growth', (rssEnd / rssWarm - 1) * 100, '%', {
      rssWarmMB: Math.round(rssWarm / 2 ** 20),
      rssEndMB: Math.round(rssEnd / 2 ** 20),
    });
    if (fivexx || crashes || failures.length || rssEnd > rssWarm * 1.1) process.exitCode = 1;
  } finally {
    await stack.stop();
  }
}
