/**
 * `npm run cli -- anonymize <files or dirs…> --out <dir> [--bundle <dir>] [options]`: batch
 * anonymization of a dataset with one warm engine.
 *
 * Layout of --out: for every input image `<rel>` (its path relative to the directory given, or its
 * base name for a file argument) → `<rel>` anonymized (extension follows --format), `<rel>.report.json`
 * (ImageReport, or the typed error), `<rel>.faces.txt` (per face: box, method, recognizer verdicts, utility),
 * `<rel>.compare.jpg` (before | after, unless --no-compare),
 * `<rel>.losses.png` (loss curves per face, when faces were found), and `summary.json` over the whole set.
 *
 * Resumable: the report is written last (after the image, both via rename), so its presence means
 * "finished"; a rerun skips those files (failed ones too: InputError / PrivacyError are deterministic
 * for the same options; `--retry-failed` redoes them, `--force` redoes everything). An interrupted
 * file has no report and is redone.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { lossCurvesPng } from './loss-plot.js';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { DEFAULT_DEMO_BUNDLE, ensureDemoBundle } from '../../models/bundle/demo.js';
import { MANIFEST_FILE } from '../../models/bundle/manifest.js';
import { createAnonymizer } from '../pipeline/anonymize.js';
import {
  InputError,
  PrivacyError,
  type AnonymizeOptions,
  type FaceAttributes,
  type FaceMethod,
  type FaceReport,
  type ImageReport,
  type OutputFormat,
  type RecognisablePolicy,
  type ResidualPolicy,
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

/**
 * The per-image report as text (`<rel>.faces.txt`, and stdout with --verbose): faces found and residual faces,
 * then one line per face: box, method (and why), every recognizer's distance/threshold/verdict, and the
 * utility comparison (attributes measured on the original → on the anonymized face) when measured.
 */
export function faceTable(rel: string, r: ImageReport): string {
  const lines = [
    `${rel}: ${r.width}×${r.height}, ${r.faces.length} face(s) covered (detected ${r.facesFound ?? r.faces.length}, residual ${r.residualFaces ?? 0})`,
  ];
  for (const f of r.faces) {
    const b = f.box;
    const box = `[${Math.round(b.x)},${Math.round(b.y)} ${Math.round(b.width)}×${Math.round(b.height)}]`;
    const method = `${f.method ?? 'falco'}${f.methodReason ? ` (${f.methodReason})` : ''}${f.residual ? ' residual' : ''}`;
    const ids = (f.recognizers ?? []).map(
      (v) =>
        `${v.recognizer} ${v.distance.toFixed(3)}/${v.threshold.toFixed(3)} ${v.recognisable ? 'SAME' : 'different'}`,
    );
    lines.push(
      `  face ${f.index} ${box} ${method} | ${ids.join('; ') || 'no recognizer verdict'} | ${utilityText(f)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The utility comparison of one face, original→anonymized: "age 31→29, F→F, happy→happy, pose Δ4°" (pose Δ: the
 * largest change of yaw, pitch or roll). Fallback-covered faces are not measured (the pipeline gives their
 * utility up): "utility n/a (pixelate)".
 */
export function utilityText(f: FaceReport): string {
  const a = f.attributes;
  if (!a) return f.method && f.method !== 'falco' ? `utility n/a (${f.method})` : 'utility not measured';
  const g = (x: FaceAttributes) => (x.gender === 'female' ? 'F' : 'M');
  return (
    `age ${a.original.age.toFixed(0)}→${a.anonymized.age.toFixed(0)}, ${g(a.original)}→${g(a.anonymized)}, ` +
    `${a.original.expression}→${a.anonymized.expression}, pose Δ${a.change.poseDeltaDeg.toFixed(0)}°`
  );
}

/** Utility over the faces measured (FALCO faces): how often gender and expression were kept, typical changes. */
export interface UtilitySummary {
  measured: number;
  genderKept: number;
  expressionKept: number;
  medianAbsAgeDelta: number;
  medianPoseDeltaDeg: number;
}

export function utilitySummary(faces: readonly FaceReport[]): UtilitySummary | null {
  const changes = faces.flatMap((f) => (f.attributes ? [f.attributes.change] : []));
  if (!changes.length) return null;
  const median = (v: number[]) => {
    const s = [...v].sort((x, y) => x - y);
    const k = s.length >> 1;
    return s.length % 2 ? s[k]! : (s[k - 1]! + s[k]!) / 2;
  };
  return {
    measured: changes.length,
    genderKept: changes.filter((c) => c.genderKept).length,
    expressionKept: changes.filter((c) => c.expressionKept).length,
    medianAbsAgeDelta: median(changes.map((c) => Math.abs(c.ageDelta))),
    medianPoseDeltaDeg: median(changes.map((c) => c.poseDeltaDeg)),
  };
}

export interface BatchOptions {
  out: string;
  bundle: string;
  options: AnonymizeOptions;
  compare: boolean;
  force: boolean;
  retryFailed: boolean;
  progress: boolean;
  verbose?: boolean;
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
  /** Faces found by detection, and those only the residual scan found (over the images returned). */
  facesFound: number;
  residualFaces: number;
  /** Faces per `method:methodReason` (e.g. "falco", "pixelate:small", "pixelate:recognisable"). */
  methods: Record<string, number>;
  reidentified: number;
  /** The utility check over the FALCO faces (null when none was measured). */
  utility: UtilitySummary | null;
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
        const table = faceTable(job.rel, res.report);
        await writeAtomic(join(o.out, `${job.rel}.faces.txt`), table);
        if (o.verbose) process.stdout.write(table);
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
    facesFound: reports.reduce((a, r) => a + (r.status === 'failed' ? 0 : (r.report.facesFound ?? 0)), 0),
    residualFaces: reports.reduce(
      (a, r) => a + (r.status === 'failed' ? 0 : (r.report.residualFaces ?? 0)),
      0,
    ),
    methods: faces.reduce<Record<string, number>>((acc, f) => {
      const k = f.method ? `${f.method}${f.methodReason ? `:${f.methodReason}` : ''}` : 'falco';
      acc[k] = (acc[k] ?? 0) + 1;
      return acc;
    }, {}),
    reidentified: faces.filter((f) => f.reidentified).length,
    utility: utilitySummary(faces),
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
    .addOption(
      new Option('--format <f>', 'output format (default: as the input)').choices(['jpeg', 'png', 'webp']),
    )
    .option('--threads <n>', 'onnxruntime threads', num('--threads', true))
    .option('--no-compare', 'do not write the before|after pictures')
    .option('--force', 'redo files that already have a report', false)
    .option('--retry-failed', 'redo files whose report says failed', false)
    .option(
      '--small-faces <m>',
      'cover for faces too small/turned for FALCO: pixelate (default), fill, blur, falco',
    )
    .option('--on-recognisable <p>', 'a face still recognisable after the retries: obscure (default) or fail')
    .option(
      '--on-residual <p>',
      'a face missed by detection, found on the output: anonymize (default) or fail',
    )
    .option('--verbose', "print every image's face table (also written as <rel>.faces.txt)", false)
    .option('--no-progress', 'no progress bar')
    .addHelpText(
      'after',
      `
Examples:
  $ npm run cli -- anonymize photos/ --out anonymized/
  $ npm run cli -- anonymize a.jpg b.png --out out --steps 100 --format png
  $ npm run cli -- anonymize photos/ --out anonymized/ --retry-failed      # resume, redo failures
  $ npm run cli -- anonymize photos/ --out out --bundle var/bundles/falco  # the production bundle

Without --bundle (and BUNDLE_DIR) the demo bundle is used, built into var/bundles/demo on first use.
It is not photorealistic: faces become abstract pattern renders (see README, "Model bundles").`,
    )
    .action(async (inputs: string[], o: Record<string, unknown>, cmd: Command) => {
      // The default bundle is built on first use, like \`npm start\` does; an explicit --bundle or
      // BUNDLE_DIR is never built over (a missing one is a one-line error naming the build commands).
      const bundle = resolve(o['bundle'] as string);
      await collectInputs(inputs); // a wrong path fails before a first-use bundle build
      if (
        cmd.getOptionValueSource('bundle') === 'default' &&
        bundle === DEFAULT_DEMO_BUNDLE &&
        !existsSync(join(bundle, MANIFEST_FILE))
      ) {
        console.error(`· building the demo model bundle into ${bundle} (first use only, about a minute)…`);
        await ensureDemoBundle(bundle);
      }
      const options: AnonymizeOptions = {};
      if (o['steps'] !== undefined) options.steps = o['steps'] as number;
      if (o['margin'] !== undefined) options.idMargin = o['margin'] as number;
      if (o['lambdaId'] !== undefined) options.lambdaId = o['lambdaId'] as number;
      if (o['lambdaAttr'] !== undefined) options.lambdaAttr = o['lambdaAttr'] as number;
      if (o['lr'] !== undefined) options.lr = o['lr'] as number;
      if (o['layers'] !== undefined) options.layers = o['layers'] as [number, number];
      if (o['seed'] !== undefined) options.seed = o['seed'] as number;
      if (o['format'] !== undefined) options.format = o['format'] as OutputFormat;
      // Checked by the engine's resolveOptions (one owner of the allowed values).
      if (o['smallFaces'] !== undefined) options.smallFaces = o['smallFaces'] as FaceMethod;
      if (o['onRecognisable'] !== undefined)
        options.onRecognisable = o['onRecognisable'] as RecognisablePolicy;
      if (o['onResidual'] !== undefined) options.onResidual = o['onResidual'] as ResidualPolicy;
      const s = await runBatch(inputs, {
        out: resolve(o['out'] as string),
        bundle,
        options,
        compare: o['compare'] !== false,
        force: o['force'] === true,
        retryFailed: o['retryFailed'] === true,
        progress: o['progress'] !== false && process.stderr.isTTY === true,
        verbose: o['verbose'] === true,
        ...(o['threads'] ? { threads: o['threads'] as number } : {}),
      });
      console.log(JSON.stringify(s));
      if (s.failed.length) process.exitCode = 3;
    });
}
export const register = registerAnonymize;
