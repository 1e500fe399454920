/**
 * `npm run cli -- anonymize <files or dirs…> --out <dir> [--bundle <dir>] [options]`: batch
 * anonymization of a dataset with one warm engine.
 *
 * Layout of --out: for every input image `<rel>` (its path relative to the directory given, or its
 * base name for a file argument) → `<rel>` anonymized (extension follows --format), `<rel>.report.json`
 * (ImageReport, or the typed error), `<rel>.compare.jpg` (before | after, unless --no-compare),
 * `<rel>.losses.png` (loss curves per face, when faces were found), and `summary.json` over the whole set.
 *
 * Resumable: the report is written last (after the image, both via rename), so its presence means
 * "finished"; a rerun skips those files (failed ones too: InputError / PrivacyError are deterministic
 * for the same options; `--retry-failed` redoes them, `--force` redoes everything). An interrupted
 * file has no report and is redone.
 */
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { lossCurvesPng } from './loss-plot.js';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { DEFAULT_DEMO_BUNDLE } from '../../models/bundle/demo.js';
import { createAnonymizer } from '../pipeline/anonymize.js';
import {
  InputError,
  PrivacyError,
  type AnonymizeOptions,
  type ImageReport,
  type OutputFormat,
} from '../pipeline/types.js';
import { FORMATS } from '../pipeline/formats.js';

const IMAGE_EXT = new Set(Object.values(FORMATS).flatMap((f) => f.extensions.map((e) => `.${e}`)));
const EXT_OF = (f: OutputFormat) => `.${FORMATS[f].extension}`;

export interface Job {
  input: string;
  /** Output path of the anonymized image, without the final extension decision (see outputPath). */
  rel: string;
}

/** Expand files and directories (recursively, sorted) into jobs with output-relative names. */
export async function collectInputs(args: string[]): Promise<Job[]> {
  const jobs: Job[] = [];
  const walk = async (root: string, dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(root, p);
      else if (e.isFile() && IMAGE_EXT.has(extname(e.name).toLowerCase()))
        jobs.push({ input: p, rel: relative(root, p) });
    }
  };
  for (const a of args) {
    if (!existsSync(a)) throw new InputError('not-found', `input ${a} does not exist`);
    if (statSync(a).isDirectory()) await walk(a, a);
    else jobs.push({ input: a, rel: basename(a) });
  }
  const seen = new Map<string, string>();
  for (const j of jobs) {
    const prev = seen.get(j.rel);
    if (prev)
      throw new InputError(
        'name-clash',
        `${prev} and ${j.input} would both be written as ${j.rel}; pass their parent directories instead`,
      );
    seen.set(j.rel, j.input);
  }
  return jobs;
}

export function outputPath(
  outDir: string,
  rel: string,
  format: OutputFormat | undefined,
  inputFormat: string,
): string {
  const ext = format ? EXT_OF(format) : extname(rel) || inputFormat;
  return join(outDir, rel.slice(0, rel.length - extname(rel).length) + ext);
}

export const reportPath = (outDir: string, rel: string): string => join(outDir, `${rel}.report.json`);

type FileReport =
  | { status: 'ok' | 'no_faces'; input: string; output: string; report: ImageReport }
  | { status: 'failed'; input: string; error: { name: string; code?: string; message: string } };

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.partial-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** Side-by-side before | after, at most 512 px high. */
export async function comparePicture(before: Uint8Array, after: Uint8Array): Promise<Buffer> {
  const meta = await sharp(before).rotate().metadata();
  const h0 = meta.autoOrient?.height ?? meta.height ?? 512;
  const h = Math.min(512, h0);
  const a = await sharp(before)
    .rotate()
    .resize({ height: h })
    .removeAlpha()
    .toBuffer({ resolveWithObject: true });
  const b = await sharp(after).resize({ height: h }).removeAlpha().toBuffer({ resolveWithObject: true });
  const gap = 8;
  return sharp({
    create: { width: a.info.width + gap + b.info.width, height: h, channels: 3, background: '#ffffff' },
  })
    .composite([
      { input: a.data, left: 0, top: 0 },
      { input: b.data, left: a.info.width + gap, top: 0 },
    ])
    .jpeg({ quality: 90 })
    .toBuffer();
}

export interface BatchOptions {
  out: string;
  bundle: string;
  options: AnonymizeOptions;
  compare: boolean;
  force: boolean;
  retryFailed: boolean;
  progress: boolean;
  threads?: number;
}

export interface BatchSummary {
  bundle: { id: string; demo: boolean };
  files: number;
  processed: number;
  skipped: number;
  ok: number;
  noFaces: number;
  failed: Array<{ input: string; error: string }>;
  faces: number;
  reidentified: number;
  meanIdentityDistance: number | null;
  meanFaceMs: number | null;
  wallMs: number;
}

export async function runBatch(inputs: string[], o: BatchOptions): Promise<BatchSummary> {
  const t0 = performance.now();
  const jobs = await collectInputs(inputs);
  if (jobs.length === 0)
    throw new InputError('no-inputs', `no JPEG, PNG or WebP files found in ${inputs.join(', ')}`);
  await mkdir(o.out, { recursive: true });
  const anonymizer = await createAnonymizer({
    bundleDir: o.bundle,
    warm: true,
    ...(o.threads ? { engine: { threads: o.threads } } : {}),
  });
  const m = anonymizer.engine.manifest;
  if (m.demo)
    console.error('· DEMO bundle: faces are replaced with pattern-weight renders, not photorealistic faces');
  const bar = o.progress
    ? new cliProgress.SingleBar(
        {
          format: 'anonymize [{bar}] {percentage}% | {done}/{files} files | {file} {detail}',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
  bar?.start(jobs.length * 100, 0, { done: 0, files: jobs.length, file: '', detail: '' });
  const reports: FileReport[] = [];
  let processed = 0;
  let skipped = 0;
  try {
    for (const [i, job] of jobs.entries()) {
      const rp = reportPath(o.out, job.rel);
      if (!o.force && existsSync(rp)) {
        const prev = JSON.parse(await readFile(rp, 'utf8')) as FileReport;
        if (!(o.retryFailed && prev.status === 'failed')) {
          reports.push(prev);
          skipped++;
          bar?.update((i + 1) * 100, { done: i + 1, file: job.rel, detail: '(done before)' });
          continue;
        }
      }
      const bytes = await readFile(job.input);
      let rep: FileReport;
      try {
        const res = await anonymizer.anonymize(bytes, o.options, (p) =>
          bar?.update(i * 100 + Math.floor(p.fraction * 100), {
            done: i,
            file: job.rel,
            detail: p.faces
              ? `face ${(p.face ?? 0) + 1}/${p.faces} ${p.stage}${p.step ? ` ${p.step}/${p.steps}` : ''}`
              : p.stage,
          }),
        );
        const out = outputPath(o.out, job.rel, res.report.format, extname(job.input));
        await writeAtomic(out, res.image);
        if (o.compare)
          await writeAtomic(join(o.out, `${job.rel}.compare.jpg`), await comparePicture(bytes, res.image));
        if (res.report.faces.length)
          await writeAtomic(
            join(o.out, `${job.rel}.losses.png`),
            await lossCurvesPng(res.report.faces, `${job.rel} · bundle ${res.report.bundle.id}`),
          );
        rep = {
          status: res.report.outcome,
          input: job.input,
          output: relative(o.out, out),
          report: res.report,
        };
      } catch (e) {
        if (!(e instanceof InputError || e instanceof PrivacyError)) throw e;
        rep = {
          status: 'failed',
          input: job.input,
          error: { name: e.name, ...(e instanceof InputError ? { code: e.code } : {}), message: e.message },
        };
      }
      await writeAtomic(rp, `${JSON.stringify(rep, null, 2)}\n`);
      reports.push(rep);
      processed++;
      bar?.update((i + 1) * 100, { done: i + 1, file: job.rel, detail: rep.status });
    }
  } finally {
    bar?.stop();
    await anonymizer.close();
  }
  const faces = reports.flatMap((r) => (r.status === 'failed' ? [] : r.report.faces));
  const faceMs = faces.map((f) => Object.values(f.timingsMs).reduce((a, b) => a + b, 0));
  const summary: BatchSummary = {
    bundle: { id: m.id, demo: m.demo },
    files: jobs.length,
    processed,
    skipped,
    ok: reports.filter((r) => r.status === 'ok').length,
    noFaces: reports.filter((r) => r.status === 'no_faces').length,
    failed: reports.flatMap((r) =>
      r.status === 'failed' ? [{ input: r.input, error: `${r.error.name}: ${r.error.message}` }] : [],
    ),
    faces: faces.length,
    reidentified: faces.filter((f) => f.reidentified).length,
    meanIdentityDistance: faces.length
      ? faces.reduce((a, f) => a + f.identityDistance, 0) / faces.length
      : null,
    meanFaceMs: faceMs.length ? faceMs.reduce((a, b) => a + b, 0) / faceMs.length : null,
    wallMs: performance.now() - t0,
  };
  await writeAtomic(join(o.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}

const num =
  (name: string, int = false) =>
  (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || (int && !Number.isInteger(n)))
      throw new InvalidArgumentError(`${name} must be ${int ? 'an integer' : 'a number'}`);
    return n;
  };

/** Register `anonymize` on the `npm run cli` program. */
export function registerAnonymize(program: Command): void {
  program
    .command('anonymize')
    .description('anonymize every face in images or directories of images (resumable)')
    .argument('<inputs...>', 'image files or directories (searched recursively for .jpg/.jpeg/.png/.webp)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--bundle <dir>', 'model bundle', process.env['BUNDLE_DIR'] ?? DEFAULT_DEMO_BUNDLE)
    .option('--steps <n>', 'optimisation steps per face (default: bundle, 50)', num('--steps', true))
    .option('--margin <m>', 'identity cosine margin m (default 0)', num('--margin'))
    .option('--lambda-id <x>', 'identity loss weight (default 10)', num('--lambda-id'))
    .option('--lambda-attr <x>', 'attribute loss weight (default 0.1)', num('--lambda-attr'))
    .option('--lr <x>', 'Adam learning rate (default 0.01)', num('--lr'))
    .option('--layers <a,b>', 'trainable W+ layer range [a, b) (default 3,8)', (v: string) => {
      const p = v.split(',').map(Number);
      if (p.length !== 2 || !p.every(Number.isInteger))
        throw new InvalidArgumentError('--layers must be two integers "start,end"');
      return p as [number, number];
    })
    .option('--seed <n>', 'seed for every random choice', num('--seed', true))
    .option('--format <f>', 'output format: jpeg, png or webp (default: as the input)')
    .option('--threads <n>', 'onnxruntime threads', num('--threads', true))
    .option('--no-compare', 'do not write the before|after pictures')
    .option('--force', 'redo files that already have a report', false)
    .option('--retry-failed', 'redo files whose report says failed', false)
    .option('--no-progress', 'no progress bar')
    .action(async (inputs: string[], o: Record<string, unknown>) => {
      const options: AnonymizeOptions = {};
      if (o['steps'] !== undefined) options.steps = o['steps'] as number;
      if (o['margin'] !== undefined) options.idMargin = o['margin'] as number;
      if (o['lambdaId'] !== undefined) options.lambdaId = o['lambdaId'] as number;
      if (o['lambdaAttr'] !== undefined) options.lambdaAttr = o['lambdaAttr'] as number;
      if (o['lr'] !== undefined) options.lr = o['lr'] as number;
      if (o['layers'] !== undefined) options.layers = o['layers'] as [number, number];
      if (o['seed'] !== undefined) options.seed = o['seed'] as number;
      if (o['format'] !== undefined) options.format = o['format'] as OutputFormat;
      const s = await runBatch(inputs, {
        out: resolve(o['out'] as string),
        bundle: resolve(o['bundle'] as string),
        options,
        compare: o['compare'] !== false,
        force: o['force'] === true,
        retryFailed: o['retryFailed'] === true,
        progress: o['progress'] !== false && process.stderr.isTTY === true,
        ...(o['threads'] ? { threads: o['threads'] as number } : {}),
      });
      console.log(JSON.stringify(s));
      if (s.failed.length) process.exitCode = 3;
    });
}
export const register = registerAnonymize;
