import { cpus, loadavg } from 'node:os';

/** One JSON line per figure; the machine context rides along so numbers can be compared later. */
export function report(
  bench: string,
  figure: string,
  value: number,
  unit: string,
  extra: Record<string, unknown> = {},
): void {
  console.log(
    JSON.stringify({
      bench,
      figure,
      value: Number(value.toPrecision(4)),
      unit,
      ...extra,
      cpus: cpus().length,
      load1: Number(loadavg()[0]!.toFixed(2)),
    }),
  );
}

/** Median wall time of `fn` over `reps` runs after `warmup` runs, in ms. */
export async function timeIt(fn: () => Promise<unknown>, reps = 3, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    await fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}
