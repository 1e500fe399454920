/** Shared fixtures for the anonymization tests: a toy-model bundle (built once per file) and sample photos. */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { assembleBundle } from '../../models/bundle/build.js';
import { readManifest, writeManifest, type BundleManifest } from '../../models/bundle/manifest.js';
import { buildPool } from '../../models/bundle/pool.js';
import { REPO_ROOT } from '../../models/fixtures/paths.js';
import { writeToyModels } from './toy-models.js';
import { cp } from 'node:fs/promises';

export const SAMPLES = join(REPO_ROOT, 'node_modules', '@vladmandic', 'face-api', 'demo');
const ZERO = '0'.repeat(64);

/** A bundle of toy contract models + face-api nets + an 8-fake pool, in a fresh temp dir. */
export async function toyBundle(poolSize = 8): Promise<{ dir: string; manifest: BundleManifest }> {
  const root = await mkdtemp(join(tmpdir(), 'falco-toy-'));
  const dir = join(root, 'toy');
  const comp = { source: 'toy', sha256: ZERO, license: 'test' };
  await assembleBundle({
    outDir: dir,
    name: 'toy',
    demo: true,
    components: { generator: comp, e4e: comp, arcface: comp, farl: comp },
    writeModels: (d) => writeToyModels(d),
  });
  const manifest = await buildPool(dir, { n: poolSize, seed: 1 });
  return { dir, manifest };
}

/** Copy a bundle and edit its manifest (e.g. a stricter re-identification policy). */
export async function editedCopy(dir: string, edit: (m: BundleManifest) => void): Promise<string> {
  const out = join(await mkdtemp(join(tmpdir(), 'falco-toy-edit-')), 'b');
  await cp(dir, out, { recursive: true });
  const m = await readManifest(out);
  edit(m);
  await writeManifest(out, m);
  return out;
}

/** A sample photo re-encoded as PNG (so "unchanged pixels" can be checked bit for bit). */
export async function samplePng(name = 'sample2.jpg', width?: number): Promise<Buffer> {
  let p = sharp(await readFile(join(SAMPLES, name)));
  if (width) p = p.resize({ width });
  return p.png().toBuffer();
}

export async function rgb(bytes: Uint8Array): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** A face-free picture (smooth gradient) carrying EXIF, as JPEG. */
export async function noFaceJpeg(): Promise<Buffer> {
  const w = 160;
  const h = 120;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set([x, y * 2, 128], (y * w + x) * 3);
  return sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .withExif({ IFD0: { Copyright: 'secret-owner', Artist: 'someone' } })
    .jpeg()
    .toBuffer();
}

export async function writeTemp(name: string, data: Uint8Array): Promise<string> {
  const p = join(await mkdtemp(join(tmpdir(), 'falco-in-')), name);
  await writeFile(p, data);
  return p;
}
