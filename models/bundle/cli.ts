/**
 * `npm run models -- <command>`:
 *   demo  [--out DIR] [--pool N]                 pattern-weight demo bundle (seconds, deterministic)
 *   build --falco DIR [--out DIR] [--pool N] [--trainable A:B|all] [--step-batch LIST]
 *                                                production bundle from the four official checkpoints (pool 10000,
 *                                                trainable W+ rows FALCO's [3, 8) unless --trainable says otherwise)
 *   publish (--falco DIR [--pool N] [--trainable A:B|all] | --bundle DIR) --to s3://bucket/prefix
 *                                                build (or take) a bundle, verify it (hashes, a pool, every model
 *                                                loads), upload it (parallel, streamed; manifest last)
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
import { FALCO_DEFAULTS } from '../falco/contract.js';
import { DEFAULT_CONCURRENCY, parseBundleUri, uploadBundle, verifyBundle } from './transfer.js';

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
/** FALCO's fake pool size. */
const FALCO_POOL_SIZE = 10_000;

/** What `build` (and `publish --falco`) take. */
interface BuildOptions {
  falco: string;
  out: string;
  name: string;
  pool: number;
  trainable: [number, number] | 'all';
  stepBatch?: number[];
}

/**
 * Production bundles train FALCO's W+ rows [3, 8) unless told otherwise: the step's backward is then pruned
 * to them (full-size step 3.4-3.8 s and 3.1 GiB peak RSS against 4.3 s and 4.2 GiB with every row; README,
 * Performance). `--trainable all` keeps every row trainable for callers who pick other `layers`.
 */
const FALCO_TRAINABLE: [number, number] = [...FALCO_DEFAULTS.layers];

async function buildWithPool(o: BuildOptions): Promise<BundleManifest> {
  let m = await buildFromCheckpoints({
    falcoDir: o.falco,
    outDir: o.out,
    name: o.name,
    log,
    ...(o.trainable !== 'all' ? { trainable: o.trainable } : {}),
    ...(o.stepBatch ? { stepBatches: o.stepBatch } : {}),
  });
  if (o.pool > 0) {
    const b = bar('fake pool');
    m = await buildPool(o.out, { n: o.pool, onProgress: (d, t) => b.update(d, t) });
    b.stop();
  }
  return m;
}
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

/** `a:b` → [a, b) with integers 0 ≤ a < b (the manifest check bounds b by the generator's W+ rows); `all`. */
function rowRange(v: string): [number, number] | 'all' {
  if (v === 'all') return 'all';
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m || Number(m[1]) >= Number(m[2]))
    throw new InvalidArgumentError(`--trainable expects a:b with integers 0 ≤ a < b, or all, got "${v}"`);
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
  // FALCO's pool size by default: a bundle without a pool is refused by every worker (it would crash-loop).
  .option(
    '--pool <n>',
    'fake pool size (0: none, the bundle is then not deployable until `pool` adds one)',
    int('--pool'),
    FALCO_POOL_SIZE,
  )
  .option(
    '--trainable <a:b|all>',
    'W+ rows [a, b) the `layers` option may train; the step backward is pruned to them. all: every row',
    rowRange,
    FALCO_TRAINABLE,
  )
  .option(
    '--step-batch <list>',
    'also write step models for batches of faces, e.g. 4 or 2,4 (GPU workers: see README, Performance)',
    batchList,
  )
  .action(async (o: BuildOptions) => {
    const m = await buildWithPool(o);
    console.log(summary(o.out, m));
    if (!m.pool)
      console.error(
        'warning: no fake pool: workers refuse this bundle until `npm run models -- pool` adds one',
      );
  });

program
  .command('publish')
  .description('build (or take) a bundle, verify it and upload it to S3 for the workers')
  .requiredOption('--to <uri>', 's3://bucket/prefix (the stack output BundleUri)')
  .option('--falco <dir>', 'build from the official checkpoints in this directory first')
  .option('--bundle <dir>', 'publish this existing bundle instead of building one')
  .option('--out <dir>', 'where --falco builds the bundle', join(DEFAULT_BUNDLES_DIR, 'falco'))
  .option('--name <name>', 'bundle name', 'falco')
  .option('--pool <n>', 'fake pool size for --falco', int('--pool'), FALCO_POOL_SIZE)
  .option(
    '--trainable <a:b|all>',
    'W+ rows --falco makes trainable (as for build)',
    rowRange,
    FALCO_TRAINABLE,
  )
  .option('--concurrency <n>', 'objects uploaded at once', int('--concurrency'), DEFAULT_CONCURRENCY)
  .action(
    async (o: {
      to: string;
      falco?: string;
      bundle?: string;
      out: string;
      name: string;
      pool: number;
      trainable: [number, number] | 'all';
      concurrency: number;
    }) => {
      if (!!o.falco === !!o.bundle)
        throw new InvalidArgumentError('give exactly one of --falco <checkpoints> or --bundle <dir>');
      parseBundleUri(o.to);
      const dir = o.bundle ?? o.out;
      if (o.falco)
        await buildWithPool({
          falco: o.falco,
          out: o.out,
          name: o.name,
          pool: o.pool,
          trainable: o.trainable,
        });
      log(`verifying ${dir}: hashes, fake pool, every model loads`);
      const m = await verifyBundle(dir, { loadModels: true });
      console.log(summary(dir, m));
      const { S3Client } = await import('@aws-sdk/client-s3');
      const s3 = new S3Client({});
      const t0 = performance.now();
      let bytes = 0;
      const n = await uploadBundle(s3, dir, o.to, {
        concurrency: o.concurrency,
        onFile: (f, b) => {
          bytes += b;
          log(`uploaded ${f} (${(b / 1e6).toFixed(1)} MB)`);
        },
      });
      const s = (performance.now() - t0) / 1000;
      console.log(
        `published bundle ${m.id}: ${n} objects, ${(bytes / 1e6).toFixed(0)} MB in ${s.toFixed(0)} s → ${o.to}`,
      );
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
