/** Data-driven parity over a cases.json directory; shared by the CLI (main.ts) and the test suite. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ParityCase, ParityCheck, ParityHandler } from './types.js';

export interface CaseResult {
  name: string;
  kind: string;
  status: 'pass' | 'fail' | 'skip';
  checks: ParityCheck[];
  ms: number;
  error?: string;
  line: string;
}

export function readCases(dir: string): ParityCase[] {
  const doc = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as {
    format?: number;
    cases?: ParityCase[];
  };
  if (doc.format !== 1 || !Array.isArray(doc.cases))
    throw new Error(`${dir}/cases.json: expected {"format": 1, "cases": [...]}`);
  return doc.cases;
}

const fmt = (v: number) => (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toFixed(6) : v.toExponential(2));

function describe(c: ParityCheck): string {
  const m = Object.entries(c.metrics)
    .map(([k, v]) => `${k}=${fmt(v)}`)
    .join(' ');
  return `${c.name}[${c.pass ? 'ok' : 'FAIL'} ${m}]`;
}

/** One handler per case kind; loaded lazily so a run of one kind does not import every network. */
const HANDLERS: Record<string, () => Promise<{ default: ParityHandler }>> = {
  preprocess: () => import('./kinds/preprocess.js'),
  stylegan2: () => import('./kinds/stylegan2.js'),
  arcface: () => import('./kinds/arcface.js'),
  farl: () => import('./kinds/farl.js'),
  e4e: () => import('./kinds/e4e.js'),
  falco_step: () => import('./kinds/falco_step.js'),
};

async function handlerFor(kind: string): Promise<ParityHandler | undefined> {
  const load = Object.hasOwn(HANDLERS, kind) ? HANDLERS[kind] : undefined;
  return load ? (await load()).default : undefined;
}

export async function runParity(
  dir: string,
  o: { only?: string[]; slow?: boolean; log?: (m: string) => void; onResult?: (r: CaseResult) => void } = {},
): Promise<CaseResult[]> {
  const out: CaseResult[] = [];
  for (const c of readCases(dir)) {
    if (o.only && !o.only.includes(c.name)) continue;
    const t0 = performance.now();
    let r: CaseResult;
    if (c.slow && !o.slow) {
      r = {
        name: c.name,
        kind: c.kind,
        status: 'skip',
        checks: [],
        ms: 0,
        line: `SKIP ${c.name} (slow; set FALCO_SLOW=1)`,
      };
    } else {
      const h = await handlerFor(c.kind);
      if (!h) {
        const error = `no handler for kind "${c.kind}"`;
        r = {
          name: c.name,
          kind: c.kind,
          status: 'fail',
          checks: [],
          ms: 0,
          error,
          line: `FAIL ${c.name}: ${error}`,
        };
      } else {
        try {
          const checks = await h(c, { dir, log: o.log ?? (() => {}) });
          const ok = checks.length > 0 && checks.every((k) => k.pass);
          const ms = performance.now() - t0;
          r = {
            name: c.name,
            kind: c.kind,
            status: ok ? 'pass' : 'fail',
            checks,
            ms,
            line: `${ok ? 'PASS' : 'FAIL'} ${c.name} (${(ms / 1000).toFixed(1)} s) ${checks.map(describe).join(' ')}`,
          };
        } catch (e) {
          const error = (e as Error).stack ?? String(e);
          r = {
            name: c.name,
            kind: c.kind,
            status: 'fail',
            checks: [],
            ms: performance.now() - t0,
            error,
            line: `FAIL ${c.name}: ${(e as Error).message}`,
          };
        }
      }
    }
    o.onResult?.(r);
    out.push(r);
  }
  return out;
}
