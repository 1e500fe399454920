import { readFileSync } from 'node:fs';
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

/** Machine-wide CPU tick counters from /proc/stat (Linux; undefined elsewhere). */
export interface CpuTicks {
  steal: number;
  total: number;
}
export function cpuTicks(): CpuTicks | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already inside user.
    return { steal: f[7] ?? 0, total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
  } catch {
    return undefined;
  }
}
/**
 * Share of the machine's CPU time the hypervisor gave to other guests between two readings, in percent.
 * On a VM this is what makes wall times move between identical runs while the process's own CPU time
 * stays put, so step figures carry it.
 */
export function stealPct(a: CpuTicks | undefined, b: CpuTicks | undefined): number | undefined {
  if (!a || !b || b.total <= a.total) return undefined;
  return Math.round((1000 * (b.steal - a.steal)) / (b.total - a.total)) / 10;
}
