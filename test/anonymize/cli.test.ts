/** The batch CLI: outputs, reports, summary, before|after pictures, resumability, failures recorded. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { collectInputs, runBatch } from '../../functions/cli/anonymize.js';
import { InputError, type FaceReport } from '../../functions/pipeline/types.js';
import { noFaceJpeg, samplePng, toyBundle } from './helpers.js';

let bundle: string;
let root: string;

beforeAll(async () => {
  bundle = (await toyBundle()).dir;
  root = await mkdtemp(join(tmpdir(), 'falco-cli-'));
  await mkdir(join(root, 'in', 'sub'), { recursive: true });
  await writeFile(join(root, 'in', 'people.png'), await samplePng('sample2.jpg', 480));
  await writeFile(join(root, 'in', 'sub', 'empty.jpg'), await noFaceJpeg());
  await writeFile(join(root, 'in', 'sub', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  await writeFile(join(root, 'in', 'notes.txt'), 'not an image');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('anonymize CLI', () => {
  it('collects images recursively and refuses name clashes', async () => {
    const jobs = await collectInputs([join(root, 'in')]);
    expect(jobs.map((j) => j.rel)).toEqual([
      'people.png',
      join('sub', 'broken.jpg'),
      join('sub', 'empty.jpg'),
    ]);
    await expect(
      collectInputs([join(root, 'in', 'people.png'), join(root, 'in', 'people.png')]),
    ).rejects.toThrow(/both be written/);
    await expect(collectInputs([join(root, 'missing')])).rejects.toBeInstanceOf(InputError);
  });

  it('writes images, reports, comparisons and a summary, then resumes', async () => {
    const out = join(root, 'out');
    const opts = {
      out,
      bundle,
      options: { steps: 3 },
      compare: true,
      force: false,
      retryFailed: false,
      progress: false,
    };
    const s = await runBatch([join(root, 'in')], opts);
    expect(s).toMatchObject({ files: 3, processed: 3, skipped: 0, ok: 1, noFaces: 1 });
    expect(s.failed).toHaveLength(1);
    expect(s.failed[0]!.error).toMatch(/InputError/);
    expect(s.faces).toBeGreaterThanOrEqual(2);
    expect(s.reidentified).toBe(0);
    expect(existsSync(join(out, 'people.png'))).toBe(true);
    expect(existsSync(join(out, 'sub', 'empty.jpg'))).toBe(true);
    const rep = JSON.parse(await readFile(join(out, 'people.png.report.json'), 'utf8'));
    expect(rep.status).toBe('ok');
    expect(rep.report.faces[0].losses).toHaveLength(3);
    const broken = JSON.parse(await readFile(join(out, 'sub', 'broken.jpg.report.json'), 'utf8'));
    expect(broken).toMatchObject({ status: 'failed', error: { name: 'InputError' } });
    const cmp = await sharp(join(out, 'people.png.compare.jpg')).metadata();
    const src = await sharp(join(root, 'in', 'people.png')).metadata();
    expect(cmp.width).toBeGreaterThan(2 * src.width!);
    expect(JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')).files).toBe(3);
    // Issue #10: the per-image face table and the summary's coverage counts.
    const table = await readFile(join(out, 'people.png.faces.txt'), 'utf8');
    expect(table).toMatch(/detected \d+, residual \d+/);
    expect(table).toMatch(/face 0 \[\d+,\d+ \d+×\d+\] (falco|pixelate)/);
    expect(table).toMatch(/faceapi-128 \d\.\d{3}\/0\.\d+ (SAME|different)/);
    // The utility comparison per face, from the report's own numbers: measured FALCO faces show
    // original→anonymized, fallback faces say it is not applicable.
    const faces = rep.report.faces as FaceReport[];
    for (const f of faces) {
      const a = f.attributes;
      const sex = (g: string) => (g === 'female' ? 'F' : 'M');
      const want = a
        ? `age ${a.original.age.toFixed(0)}→${a.anonymized.age.toFixed(0)}, ${sex(a.original.gender)}→${sex(a.anonymized.gender)}, ${a.original.expression}→${a.anonymized.expression}, pose Δ${a.change.poseDeltaDeg.toFixed(0)}°`
        : `utility n/a (${f.method})`;
      expect(table.split('\n').find((l) => l.startsWith(`  face ${f.index} `))).toContain(want);
      expect(f.method === 'falco').toBe(a !== undefined);
    }
    const measured = faces.filter((f) => f.attributes);
    expect(measured.length).toBeGreaterThan(0);
    expect(s.utility).toMatchObject({
      measured: measured.length,
      genderKept: measured.filter((f) => f.attributes!.original.gender === f.attributes!.anonymized.gender)
        .length,
    });
    expect(s.facesFound + s.residualFaces).toBe(s.faces);
    expect(Object.values(s.methods).reduce((a, b) => a + b, 0)).toBe(s.faces);

    const again = await runBatch([join(root, 'in')], opts);
    expect(again).toMatchObject({ processed: 0, skipped: 3, ok: 1, noFaces: 1 });
    const retried = await runBatch([join(root, 'in')], { ...opts, retryFailed: true });
    expect(retried).toMatchObject({ processed: 1, skipped: 2 });
  });
});
