/**
 * `npm run cli -- submit <dir> --api <url> --key <key>`: send a folder of photos to a deployed (or the
 * local) API and download the results next to the inputs.
 *
 * For every image `<dir>/<rel>` (searched recursively; JPEG, PNG, WebP):
 *  - presigned upload straight to storage (POST /v1/uploads, then the S3 POST), `--concurrency` at a time;
 *  - jobs of up to `--per-job` images (the API's per-job limit, 20 by default; a smaller limit announced
 *    by the API is followed), at most `--jobs` in flight, each created with an Idempotency-Key so a
 *    repeated or interrupted creation gives back the same job;
 *  - results as `<stem>.anonymized.<ext>` and reports as `<rel>.report.json` beside the input; an image
 *    the service refused or failed gets `<rel>.error.json` with the reason.
 *
 * Resumable: every step is appended to a journal (`<dir>/.falco-submit.jsonl`, one JSON object a line,
 * O(1) per step and safe against a crash mid-write) before the next step relies on it. A rerun replays
 * it and carries on: uploaded files are not uploaded again, created jobs are polled instead of created,
 * downloaded results are not fetched again. A file whose size or mtime changed is sent again.
 *
 * Billing: each image the service anonymized is billed once; images that failed are not. The summary
 * reports both, and the tenant's month total from GET /v1/usage.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { appendFile, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError } from 'commander';
import {
  ApiError,
  FalcoClient,
  type ImageContentType,
  type Job,
  type JobImage,
  type JobOptions,
} from '../client/index.js';
import { CliError } from './errors.js';
import { faceTable } from './anonymize.js';
import type { ImageReport } from '../pipeline/types.js';

/** The downloaded report as an ImageReport, or null when it is not one (the table is a convenience). */
function reportOf(text: string | Uint8Array): ImageReport | null {
  try {
    const r = JSON.parse(typeof text === 'string' ? text : Buffer.from(text).toString('utf8')) as ImageReport;
    return Array.isArray(r?.faces) ? r : null;
  } catch {
    return null;
  }
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp']);
const EXT_OF: Record<string, string> = {
  'image/jpeg': '.jpg',
  'image/png': '.png',
  'image/webp': '.webp',
};
export const JOURNAL = '.falco-submit.jsonl';

/** What `--per-job` defaults to: the API's MAX_IMAGES_PER_JOB default. */
export const DEFAULT_PER_JOB = 20;

type FileState = 'new' | 'uploaded' | 'submitted' | 'done' | 'failed';

interface FileEntry {
  rel: string;
  size: number;
  mtimeMs: number;
  state: FileState;
  uploadId?: string;
  jobId?: string;
  imageId?: string;
  progress?: number;
  result?: string;
  report?: string;
  error?: { code: string; detail: string };
}

interface Batch {
  id: string;
  files: string[];
  jobId?: string;
}

/** One journal line. A created job is one line, so a crash leaves it either wholly recorded or not at all. */
type Entry =
  | { t: 'header'; version: 1; id: string; api: string }
  | { t: 'file'; rel: string; patch: Partial<FileEntry> }
  | { t: 'batch'; id: string; files: string[] }
  | { t: 'job'; batch: string; jobId: string; images: Array<[rel: string, imageId: string]> };

export interface SubmitEvent {
  type: 'uploaded' | 'job' | 'downloaded' | 'failed';
  file?: string;
  jobId?: string;
}

export interface SubmitOptions {
  dir: string;
  api: string;
  key: string;
  options?: JobOptions;
  webhook?: string;
  perJob?: number;
  /** Parallel transfers (uploads and downloads). */
  concurrency?: number;
  /** Jobs in flight at once. */
  jobs?: number;
  pollMs?: number;
  retryFailed?: boolean;
  progress?: boolean;
  signal?: AbortSignal;
  /** For tests: count or fail requests. */
  fetch?: typeof fetch;
  onEvent?: (e: SubmitEvent) => void;
  /** Where messages go (default stderr). */
  log?: (line: string) => void;
}

export interface SubmitSummary {
  dir: string;
  files: number;
  /** Already finished (done or failed) in an earlier run. */
  skipped: number;
  uploaded: number;
  jobs: number;
  done: number;
  failed: Array<{ file: string; code: string; detail: string }>;
  /** Images anonymized by the service for this folder (all runs): what it bills. */
  billableImages: number;
  /** The tenant's billable images this month (GET /v1/usage), when the API answered. */
  monthBillableImages: number | null;
  month: string | null;
  wallMs: number;
}

/** Results written next to the inputs are named `<stem>.anonymized.<ext>`; they are never inputs. */
const isOutput = (name: string) => /\.anonymized\.[a-z0-9]+$/i.test(name);

async function collect(dir: string): Promise<Array<{ rel: string; size: number; mtimeMs: number }>> {
  const out: Array<{ rel: string; size: number; mtimeMs: number }> = [];
  const walk = async (d: string): Promise<void> => {
    const entries = (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && IMAGE_EXT.has(extname(e.name).toLowerCase()) && !isOutput(e.name)) {
        const st = statSync(p);
        out.push({
          rel: relative(dir, p).split(sep).join('/'),
          size: st.size,
          mtimeMs: Math.floor(st.mtimeMs),
        });
      }
    }
  };
  await walk(dir);
  return out;
}

/** Content type from the magic bytes (the API checks them too; refusing early saves an upload). */
export function sniff(bytes: Uint8Array): ImageContentType | undefined {
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'image/png';
  if (
    Buffer.from(bytes.subarray(0, 4)).toString('latin1') === 'RIFF' &&
    Buffer.from(bytes.subarray(8, 12)).toString('latin1') === 'WEBP'
  )
    return 'image/webp';
  return undefined;
}

/** A small counting semaphore: `--concurrency` transfers at a time across all jobs. */
function limiter(n: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/** The journal: state in memory, every change appended (serialised) to the file. */
class Journal {
  files = new Map<string, FileEntry>();
  batches = new Map<string, Batch>();
  id = '';
  private chain: Promise<void> = Promise.resolve();
  constructor(readonly path: string) {}

  async load(api: string): Promise<void> {
    if (existsSync(this.path)) {
      const lines = (await readFile(this.path, 'utf8')).split('\n');
      for (const [i, line] of lines.entries()) {
        if (!line.trim()) continue;
        let e: Entry;
        try {
          e = JSON.parse(line) as Entry;
        } catch {
          // Only the last line can be torn (a crash mid-append); anything else is a damaged file.
          if (i >= lines.length - 2) continue;
          throw new CliError(
            'bad-journal',
            `${this.path} line ${i + 1} is not JSON; move the file away to start over`,
          );
        }
        this.apply(e);
      }
      if (this.id && this.api && this.api !== api)
        throw new CliError(
          'other-api',
          `${this.path} records a submission to ${this.api}, not ${api}; use that --api, or move the file away to send the folder again`,
        );
    }
    if (!this.id) {
      this.id = randomBytes(6).toString('hex');
      this.api = api;
      await this.write({ t: 'header', version: 1, id: this.id, api });
    }
  }
  private api = '';

  private apply(e: Entry): void {
    if (e.t === 'header') {
      this.id = e.id;
      this.api = e.api;
    } else if (e.t === 'file') {
      const prev = this.files.get(e.rel);
      this.files.set(e.rel, { ...(prev ?? { rel: e.rel, size: 0, mtimeMs: 0, state: 'new' }), ...e.patch });
    } else if (e.t === 'batch') {
      this.batches.set(e.id, { id: e.id, files: e.files });
    } else if (e.t === 'job') {
      const b = this.batches.get(e.batch);
      if (b) b.jobId = e.jobId;
      for (const [rel, imageId] of e.images) {
        const prev = this.files.get(rel);
        if (prev) this.files.set(rel, { ...prev, state: 'submitted', jobId: e.jobId, imageId, progress: 0 });
      }
    }
  }

  private write(e: Entry): Promise<void> {
    this.chain = this.chain.then(() => appendFile(this.path, `${JSON.stringify(e)}\n`));
    return this.chain;
  }

  /** Change a file's entry and wait until the change is on disk. */
  file(rel: string, patch: Partial<FileEntry>): Promise<void> {
    const e: Entry = { t: 'file', rel, patch };
    this.apply(e);
    return this.write(e);
  }

  batch(b: Batch): Promise<void> {
    const e: Entry = { t: 'batch', id: b.id, files: b.files };
    this.apply(e);
    return this.write(e);
  }

  job(batch: string, jobId: string, images: Array<[string, string]>): Promise<void> {
    const e: Entry = { t: 'job', batch, jobId, images };
    this.apply(e);
    return this.write(e);
  }

  flush(): Promise<void> {
    return this.chain;
  }
}

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.partial-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** `photos/a.jpg` + `image/png` → `photos/a.anonymized.png`. */
export function resultName(rel: string, contentType: string): string {
  const ext = EXT_OF[contentType] ?? (extname(rel) || '.bin');
  return `${rel.slice(0, rel.length - extname(rel).length)}.anonymized${ext}`;
}

/** "image 3 (x.jpg): …" → 2 (the API's 1-based image label in a problem detail). */
const imageIndexOf = (detail: string): number | undefined => {
  const m = /^image (\d+)\b/.exec(detail);
  return m ? Number(m[1]) - 1 : undefined;
};

export async function runSubmit(o: SubmitOptions): Promise<SubmitSummary> {
  const t0 = performance.now();
  const dir = resolve(o.dir);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new CliError('not-a-directory', `${o.dir} is not a directory`);
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const client = new FalcoClient({
    baseUrl: o.api,
    apiKey: o.key,
    ...(o.fetch ? { fetch: o.fetch } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  let perJob = o.perJob ?? DEFAULT_PER_JOB;
  const transfer = limiter(o.concurrency ?? 4);
  const pollMs = o.pollMs ?? 1000;

  // The deployment publishes its limits: never ask for more images per job, or keep more in flight, than it allows.
  const limits = await client.getLimits().catch(() => undefined);
  const maxPerJob = limits?.['maxImagesPerJob'];
  if (maxPerJob && maxPerJob < perJob) perJob = maxPerJob;
  let jobsInFlight = Math.max(1, o.jobs ?? 4);
  const maxInFlight = limits?.['maxInFlightImages'];
  if (maxInFlight) jobsInFlight = Math.max(1, Math.min(jobsInFlight, Math.floor(maxInFlight / perJob)));
  const found = await collect(dir);
  if (found.length === 0) throw new CliError('no-inputs', `no JPEG, PNG or WebP files in ${o.dir}`);
  const journal = new Journal(join(dir, JOURNAL));
  await journal.load(new URL(o.api).href);

  // Sync the journal with the folder: new files are added, changed files start over.
  let skipped = 0;
  for (const f of found) {
    const prev = journal.files.get(f.rel);
    if (!prev || prev.size !== f.size || prev.mtimeMs !== f.mtimeMs)
      await journal.file(f.rel, { size: f.size, mtimeMs: f.mtimeMs, state: 'new', progress: 0 });
    else if (prev.state === 'failed' && o.retryFailed)
      await journal.file(f.rel, { state: 'new', progress: 0 });
    else if (prev.state === 'done' || prev.state === 'failed') skipped++;
  }
  const here = new Set(found.map((f) => f.rel));
  const entry = (rel: string) => journal.files.get(rel)!;

  // Batches: one whose job exists is followed (polled) while it has unfinished files; one without a job
  // is created again (its Idempotency-Key is a hash of the body, so a creation that did reach the API
  // is replayed, not duplicated); files in no open batch are grouped into new batches.
  const pending = (r: string) => here.has(r) && ['new', 'uploaded', 'submitted'].includes(entry(r).state);
  const batches = [...journal.batches.values()].filter((b) =>
    b.files.some(
      (r) => pending(r) && (b.jobId ? entry(r).jobId === b.jobId : entry(r).state !== 'submitted'),
    ),
  );
  const batched = new Set(batches.filter((b) => !b.jobId).flatMap((b) => b.files));
  const fresh = found.map((f) => f.rel).filter((r) => entry(r).state === 'new' && !batched.has(r));
  let batchNo = journal.batches.size;
  const newBatch = async (files: string[]) => {
    const b: Batch = { id: `b${++batchNo}`, files };
    await journal.batch(b);
    batches.push(b);
    return b;
  };
  for (let i = 0; i < fresh.length; i += perJob) await newBatch(fresh.slice(i, i + perJob));

  // Progress: 10 % upload, 80 % processing, 10 % download, per file.
  const bar = o.progress
    ? new cliProgress.SingleBar(
        {
          format:
            'submit [{bar}] {percentage}% | {done}/{files} done | {failed} failed | {jobs} jobs | {status}',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
  const weight = (e: FileEntry) =>
    e.state === 'done' || e.state === 'failed' ? 100 : e.state === 'new' ? 0 : 10 + 80 * (e.progress ?? 0);
  let status = 'starting';
  let uploaded = 0;
  let jobsCreated = 0;
  const tick = () => {
    if (!bar) return;
    const es = found.map((f) => entry(f.rel));
    bar.update(
      es.reduce((s, e) => s + weight(e), 0),
      {
        done: es.filter((e) => e.state === 'done').length,
        failed: es.filter((e) => e.state === 'failed').length,
        files: found.length,
        jobs: batches.filter((b) => b.jobId).length,
        status,
      },
    );
  };
  bar?.start(found.length * 100, 0, { done: 0, failed: 0, files: found.length, jobs: 0, status });
  tick();

  const queue = [...batches];
  let stopped = false;
  o.signal?.addEventListener('abort', () => (stopped = true), { once: true });

  const fail = async (rel: string, code: string, detail: string) => {
    await journal.file(rel, { state: 'failed', error: { code, detail } });
    await writeAtomic(
      join(dir, `${rel}.error.json`),
      `${JSON.stringify({ file: rel, code, detail }, null, 2)}\n`,
    );
    o.onEvent?.({ type: 'failed', file: rel });
    tick();
  };

  const upload = async (rel: string): Promise<boolean> => {
    const e = entry(rel);
    if (e.uploadId && e.state === 'uploaded') return true;
    return transfer(async () => {
      const bytes = await readFile(join(dir, rel));
      const type = sniff(bytes);
      if (!type) {
        await fail(
          rel,
          'unsupported-media-type',
          `${rel} is not a JPEG, PNG or WebP file (by its first bytes); convert it or remove it`,
        );
        return false;
      }
      let up;
      try {
        up = await client.createUpload({ contentType: type, bytes: bytes.length });
      } catch (err) {
        if (err instanceof ApiError && err.status === 413) {
          await fail(rel, err.code, `${err.detail}; downscale it below the limit`);
          return false;
        }
        throw err;
      }
      await client.sendUpload(up, bytes, type, basename(rel));
      await journal.file(rel, { state: 'uploaded', uploadId: up.id });
      uploaded++;
      o.onEvent?.({ type: 'uploaded', file: rel });
      tick();
      return true;
    });
  };

  const download = async (rel: string, img: JobImage): Promise<void> => {
    if (!img.result) return;
    const result = resultName(rel, img.result.contentType);
    await transfer(async () => {
      const bytes = await client.download(img.result!.url);
      const report = img.reportUrl
        ? await client.download(img.reportUrl)
        : JSON.stringify(img.report, null, 2);
      await writeAtomic(join(dir, result), bytes);
      await writeAtomic(join(dir, `${rel}.report.json`), report);
      // The same per-face table as `anonymize` (box, method, verdicts, utility comparison).
      const parsed = reportOf(report);
      if (parsed) await writeAtomic(join(dir, `${rel}.faces.txt`), faceTable(rel, parsed));
    });
    await journal.file(rel, { state: 'done', progress: 1, result, report: `${rel}.report.json` });
    await rm(join(dir, `${rel}.error.json`), { force: true }); // from an earlier failed attempt
    o.onEvent?.({ type: 'downloaded', file: rel });
    tick();
  };

  /** Create the batch's job: upload what is missing, drop images the API refuses, follow its limit. */
  const create = async (b: Batch): Promise<void> => {
    for (let attempt = 1; !stopped; attempt++) {
      const files = b.files.filter((r) => here.has(r) && ['new', 'uploaded'].includes(entry(r).state));
      if (files.length === 0) return;
      if (files.length > perJob) {
        // The API announced a smaller per-job limit: the rest goes into new batches.
        for (let i = perJob; i < files.length; i += perJob)
          queue.push(await newBatch(files.slice(i, i + perJob)));
        b.files = files.slice(0, perJob);
        await journal.batch(b);
        continue;
      }
      status = 'uploading';
      const ok = await Promise.all(files.map(upload));
      const ready = files.filter((_, i) => ok[i]);
      if (ready.length === 0) return;
      status = 'creating jobs';
      const body = {
        images: ready.map((r) => ({ uploadId: entry(r).uploadId! })),
        ...(o.options ? { options: o.options } : {}),
        ...(o.webhook ? { webhook: o.webhook } : {}),
      };
      // Same body, same key: a repeat after a crash or a lost answer returns the job already made.
      const key = `submit-${createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 40)}`;
      try {
        const { job } = await client.createJob(body, { idempotencyKey: key });
        const byIndex = [...job.images].sort((x, y) => x.index - y.index);
        b.jobId = job.id;
        await journal.job(
          b.id,
          job.id,
          ready.map((r, i) => [r, byIndex[i]!.id]),
        );
        jobsCreated++;
        o.onEvent?.({ type: 'job', jobId: job.id });
        tick();
        return;
      } catch (err) {
        if (err instanceof ApiError && err.status === 429 && !stopped) {
          // The tenant's in-flight cap (other work of this tenant) or the rate limit: wait for room.
          status = 'waiting for room at the API';
          tick();
          await new Promise((r) => setTimeout(r, 1000 * (err.retryAfterS ?? 30)));
          continue;
        }
        if (!(err instanceof ApiError) || err.status < 400 || err.status >= 500) throw err;
        if (err.status === 401 || err.status === 403)
          throw new CliError('unauthorized', `the API refused the key: ${err.detail}`);
        const announced = err.problem?.['limit'];
        const limit =
          err.code === 'too-many-images'
            ? typeof announced === 'number'
              ? announced
              : Number(/at most (\d+)/.exec(err.detail)?.[1])
            : NaN;
        if (Number.isInteger(limit) && limit > 0 && limit < ready.length) {
          log(`· the API takes at most ${limit} images per job; splitting`);
          perJob = limit;
          continue;
        }
        const i = imageIndexOf(err.detail);
        if (i === undefined || i >= ready.length || attempt > b.files.length + 2) {
          // Not about one image: every image of the batch shares the fate.
          for (const r of ready) await fail(r, err.code, err.detail);
          return;
        }
        // One image was refused (or its upload expired): drop or re-upload it, and send the rest.
        const rel = ready[i]!;
        if (err.code === 'upload-not-found') await journal.file(rel, { state: 'new', uploadId: undefined });
        else await fail(rel, err.code, err.detail.replace(/^image \d+( \([^)]*\))?/, rel));
      }
    }
  };

  /** Poll a job until every one of its images is finished here. */
  const follow = async (b: Batch): Promise<void> => {
    status = 'processing';
    const mine = () =>
      b.files.filter((r) => here.has(r) && entry(r).state === 'submitted' && entry(r).jobId === b.jobId);
    while (mine().length && !stopped) {
      let job: Job;
      try {
        job = await client.getJob(b.jobId!);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          for (const r of mine())
            await fail(
              r,
              'job-gone',
              `job ${b.jobId} no longer exists (deleted, or past the retention period); rerun with --retry-failed to send the image again`,
            );
          return;
        }
        throw err;
      }
      const byId = new Map(job.images.map((i) => [i.id, i]));
      const downloads: Promise<void>[] = [];
      for (const r of mine()) {
        const img = byId.get(entry(r).imageId!);
        if (!img) continue;
        if (img.status === 'done' && img.result) downloads.push(download(r, img));
        else if (img.status === 'failed')
          downloads.push(
            fail(
              r,
              img.error?.code ?? 'failed',
              img.error?.detail ?? 'the service could not process this image',
            ),
          );
        else if (img.progress !== entry(r).progress) {
          entry(r).progress = img.progress; // progress is display only: not journaled
          tick();
        }
      }
      await Promise.all(downloads);
      if (mine().length) await new Promise((r) => setTimeout(r, pollMs));
    }
  };

  // Batches run `--jobs` at a time; a batch created in an earlier run is only followed. The first error
  // stops every worker from taking more work; all of them are waited for, so nothing writes the journal
  // after this function returns.
  const runOne = async (b: Batch) => {
    if (!b.jobId) await create(b);
    if (b.jobId && !stopped) await follow(b);
  };
  let firstError: unknown;
  const workers = Array.from({ length: jobsInFlight }, async () => {
    for (let b = queue.shift(); b && !stopped; b = queue.shift())
      await runOne(b).catch((err: unknown) => {
        stopped = true;
        firstError ??= err;
      });
  });
  try {
    await Promise.all(workers);
    if (firstError !== undefined) throw firstError;
    o.signal?.throwIfAborted();
  } finally {
    status = 'stopped';
    tick();
    bar?.stop();
    await journal.flush();
  }

  let month: string | null = null;
  let monthBillable: number | null = null;
  try {
    const u = await client.getUsage();
    month = u.month;
    monthBillable = u.billableImages;
  } catch {
    // Usage is informational; a key without access or a network blip must not fail the run.
  }
  const es = found.map((f) => entry(f.rel));
  return {
    dir,
    files: found.length,
    skipped,
    uploaded,
    jobs: jobsCreated,
    done: es.filter((e) => e.state === 'done').length,
    failed: es.flatMap((e) =>
      e.state === 'failed'
        ? [{ file: e.rel, code: e.error?.code ?? 'failed', detail: e.error?.detail ?? '' }]
        : [],
    ),
    billableImages: es.filter((e) => e.state === 'done').length,
    monthBillableImages: monthBillable,
    month,
    wallMs: performance.now() - t0,
  };
}

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

/** One paragraph a person reads at the end of a run. */
export function describeSummary(s: SubmitSummary): string {
  const lines = [
    `${s.done}/${s.files} images anonymized${s.skipped ? ` (${s.skipped} finished in an earlier run)` : ''}; ${s.failed.length} failed; ${s.jobs} jobs created, ${s.uploaded} files uploaded`,
    `cost: ${s.billableImages} billable images for this folder (failed images are not billed)` +
      (s.monthBillableImages !== null
        ? `; ${s.monthBillableImages} this month (${s.month}) for this key's tenant`
        : ''),
  ];
  for (const f of s.failed.slice(0, 20)) lines.push(`  failed ${f.file}: [${f.code}] ${f.detail}`);
  if (s.failed.length > 20) lines.push(`  … and ${s.failed.length - 20} more (see the .error.json files)`);
  return lines.join('\n');
}

export function registerSubmit(program: Command): void {
  program
    .command('submit')
    .description(
      'send a folder of photos to the API; results and reports are written next to the inputs (resumable)',
    )
    .argument('<dir>', 'folder of JPEG, PNG or WebP images (searched recursively)')
    .requiredOption(
      '--api <url>',
      'API base URL, e.g. http://localhost:8787 or the stack output ApiUrl',
      process.env['FALCO_API'],
    )
    .requiredOption('--key <key>', 'API key (or set FALCO_API_KEY)', process.env['FALCO_API_KEY'])
    .option('--options <json>', 'job options as JSON, e.g. \'{"steps":50,"format":"png"}\'', (v: string) => {
      try {
        const o = JSON.parse(v) as unknown;
        if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error('not an object');
        return o as JobOptions;
      } catch (e) {
        throw new InvalidArgumentError(`--options must be a JSON object (${(e as Error).message})`);
      }
    })
    .option('--webhook <url>', 'webhook URL for every job')
    .option(
      '--per-job <n>',
      `images per job (the API's limit, ${DEFAULT_PER_JOB} by default)`,
      positiveInt('--per-job'),
      DEFAULT_PER_JOB,
    )
    .option('--concurrency <n>', 'parallel uploads and downloads', positiveInt('--concurrency'), 4)
    .option('--jobs <n>', 'jobs in flight at once', positiveInt('--jobs'), 4)
    .option('--retry-failed', 'send images that failed in an earlier run again', false)
    .option('--no-progress', 'no progress bar')
    .addHelpText(
      'after',
      `
Examples:
  $ npm run cli -- submit dataset/ --api http://localhost:8787 --key fk_…
  $ FALCO_API=https://api.example.com FALCO_API_KEY=fk_live_… npm run cli -- submit dataset/ --options '{"steps":100}'
  $ npm run cli -- submit dataset/ --api … --key … --retry-failed     # after fixing what failed

Interrupt it any time (Ctrl-C) and run the same command again: it resumes from ${JOURNAL} in the folder.`,
    )
    .action(async (dir: string, o: Record<string, unknown>) => {
      const ac = new AbortController();
      const onSigint = () =>
        ac.abort(new CliError('interrupted', `interrupted; run the same command again to resume`));
      process.once('SIGINT', onSigint);
      try {
        const s = await runSubmit({
          dir,
          api: o['api'] as string,
          key: o['key'] as string,
          ...(o['options'] ? { options: o['options'] as JobOptions } : {}),
          ...(o['webhook'] ? { webhook: o['webhook'] as string } : {}),
          perJob: o['perJob'] as number,
          concurrency: o['concurrency'] as number,
          jobs: o['jobs'] as number,
          retryFailed: o['retryFailed'] === true,
          progress: o['progress'] !== false && process.stderr.isTTY === true,
          signal: ac.signal,
        });
        process.stderr.write(`${describeSummary(s)}\n`);
        console.log(JSON.stringify(s));
        if (s.failed.length) process.exitCode = 3;
      } catch (err) {
        if (ac.signal.aborted) throw ac.signal.reason;
        if (err instanceof ApiError)
          throw new CliError(
            err.code,
            err.status ? `${o['api'] as string} answered ${err.status}: ${err.detail}` : err.detail,
            { cause: err },
          );
        throw err;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
