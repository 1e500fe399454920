/**
 * `npm run bench -- <name> [args]`: dispatches to test/bench/<name>.ts, whose default export prints one
 * JSON line per figure (via `report`). With no name, every benchmark runs in turn.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...args] = process.argv.slice(2);
const names = name
  ? [name]
  : readdirSync(here)
      .filter((f) => f.endsWith('.ts') && !['main.ts', 'report.ts'].includes(f) && !f.endsWith('-run.ts'))
      .map((f) => f.slice(0, -3));
for (const n of names) {
  let mod: { default: (args: string[]) => Promise<void> };
  try {
    mod = await import(join(here, `${n}.ts`));
  } catch (e) {
    console.error(`unknown benchmark "${n}" (${(e as Error).message.split('\n')[0]})`);
    process.exit(2);
  }
  await mod.default(args);
}
