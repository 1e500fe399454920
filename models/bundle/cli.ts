/**
 * `npm run models -- <command>`:
 *   demo  [--out DIR] [--pool N]                 pattern-weight demo bundle (seconds, deterministic)
 *   build --falco DIR [--out DIR] [--pool N] [--trainable A:B]   production bundle from the four official checkpoints
 *   pool  --n N [--bundle DIR] [--seed S] [--psi P]   (re)sample the fake pool of a bundle
 *   info  [--bundle DIR]                          print a bundle's manifest summary
 */
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { join } from 'node:path';
import { buildFromCheckpoints } from './build.js';
import { DEFAULT_BUNDLES_DIR, DEFAULT_DEMO_BUNDLE, DEMO_POOL_SIZE, buildDemoBundle } from './demo.js';
import { readManifest, type BundleManifest } from './manifest.js';
import { buildPool } from './pool.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
  return n;
};
const float = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};

function bar(label: string) {
  const b = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {value}/{total} {eta_formatted}`, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done: number, total: number) {
      if (!started) {
        b.start(total, 0);
        started = true;
      }
      b.update(done);
    },
    stop() {
      if (started) b.stop();
    },
  };
}

function summary(dir: string, m: BundleManifest): string {
  return [
    `bundle ${m.id} at ${dir}${m.demo ? '  (DEMO: pattern weights, output is not photorealistic)' : ''}`,
    `  generator ${m.resolution}px, W+ ${m.wLayers}×512, trainable layers [${m.defaults.layers.join(', ')}) of [${m.trainableRange.min}, ${m.trainableRange.max})`,
    `  tokens ${m.tokens.join('×')}, pool ${m.pool ? `${m.pool.n} fakes (ψ=${m.pool.psi}, seed ${m.pool.seed})` : 'none'}`,
    ...Object.entries(m.models).map(
      ([k, v]) => `  ${k.padEnd(8)} ${v.file}  ${((v.bytes + (v.data?.bytes ?? 0)) / 1e6).toFixed(1)} MB`,
    ),
  ].join('\n');
}

const log = (msg: string) => console.error(`· ${msg}`);
const program = new Command('models').description('build FALCO model bundles').showHelpAfterError();

program
  .command('demo')
  .description('build the demo bundle (pattern weights at small size + real face-api nets)')
  .option('--out <dir>', 'bundle directory', DEFAULT_DEMO_BUNDLE)
  .option('--pool <n>', 'fake pool size', int('--pool'), DEMO_POOL_SIZE)
  .action(async (o: { out: string; pool: number }) => {
    const t0 = performance.now();
    const b = bar('fake pool');
    const m = await buildDemoBundle({
      outDir: o.out,
      poolSize: o.pool,
      log,
      onPoolProgress: (d, t) => b.update(d, t),
    });
    b.stop();
    console.log(summary(o.out, m));
    console.log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  });

/** `a:b` → [a, b) with integers 0 ≤ a < b (the manifest check bounds b by the generator's W+ rows). */
function rowRange(v: string): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m || Number(m[1]) >= Number(m[2]))
    throw new InvalidArgumentError(`--trainable expects a:b with integers 0 ≤ a < b, got "${v}"`);
  return [Number(m[1]), Number(m[2])];
}

/** `2,4` → [2, 4]: batch sizes ≥ 2. */
function batchList(v: string): number[] {
  const out = v.split(',').map(Number);
  if (!v || out.some((b) => !Number.isInteger(b) || b < 2))
    throw new InvalidArgumentError(`--step-batch expects integers ≥ 2 separated by commas, got "${v}"`);
  return out;
}

program
  .command('build')
  .description('build the production bundle from the official checkpoints')
  .requiredOption(
    '--falco <dir>',
    `directory holding stylegan2_ffhq1024.pth, e4e_ffhq_encode.pt, model_ir_se50.pth, FaRL-Base-Patch16-LAIONFace20M-ep64.pth`,
  )
  .option('--out <dir>', 'bundle directory', join(DEFAULT_BUNDLES_DIR, 'falco'))
  .option('--name <name>', 'bundle name', 'falco')
  .option('--pool <n>', 'fake pool size (0: none; add one later with `pool`)', int('--pool'), 0)
  .option(
    '--trainable <a:b>',
    'W+ rows [a, b) the `layers` option may train; the step backward is pruned to them (FALCO: 3:8). Default: all',
    rowRange,
  )
  .option(
    '--step-batch <list>',
    'also write step models for batches of faces, e.g. 4 or 2,4 (GPU workers: see README, Performance)',
    batchList,
  )
  .action(
    async (o: {
      falco: string;
      out: string;
      name: string;
      pool: number;
      trainable?: [number, number];
      stepBatch?: number[];
    }) => {
      let m = await buildFromCheckpoints({
        falcoDir: o.falco,
        outDir: o.out,
        name: o.name,
        log,
        ...(o.trainable ? { trainable: o.trainable } : {}),
        ...(o.stepBatch ? { stepBatches: o.stepBatch } : {}),
      });
      if (o.pool > 0) {
        const b = bar('fake pool');
        m = await buildPool(o.out, { n: o.pool, onProgress: (d, t) => b.update(d, t) });
        b.stop();
      }
      console.log(summary(o.out, m));
    },
  );

program
  .command('pool')
  .description('sample the fake pool: z → mapping → w (ψ) → render → FaRL features')
  .requiredOption('--n <n>', 'number of fakes', int('--n'))
  .option('--bundle <dir>', 'bundle directory', DEFAULT_DEMO_BUNDLE)
  .option('--seed <s>', 'sampling seed', int('--seed'), 0)
  .option('--psi <psi>', 'truncation ψ (default: the manifest, 0.7)', float('--psi'))
  .action(async (o: { n: number; bundle: string; seed: number; psi?: number }) => {
    const b = bar('fake pool');
    const m = await buildPool(o.bundle, {
      n: o.n,
      seed: o.seed,
      ...(o.psi !== undefined ? { psi: o.psi } : {}),
      onProgress: (d, t) => b.update(d, t),
    });
    b.stop();
    console.log(summary(o.bundle, m));
  });

program
  .command('info')
  .description("print a bundle's manifest summary")
  .option('--bundle <dir>', 'bundle directory', DEFAULT_DEMO_BUNDLE)
  .action(async (o: { bundle: string }) => console.log(summary(o.bundle, await readManifest(o.bundle))));

try {
  await program.parseAsync(process.argv);
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
}
