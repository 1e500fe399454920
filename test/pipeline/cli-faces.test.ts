import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { runFaces } from '../../functions/cli/faces.js';
import { samplePath } from '../faceapi/oracle.js';

describe('cli faces', () => {
  it('writes a metadata-free contact sheet PNG and a JSON report', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cli-faces-'));
    const r = await runFaces(samplePath(1), {
      out,
      size: 256,
      threshold: 0.5,
      minFaceSize: 0,
      sheetWidth: 1200,
    });
    expect(r.faces).toBe(3);
    const meta = await sharp(r.sheet).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBe(1200);
    // 1200×800 photo + one row of 3 aligned crops below it.
    expect(meta.height).toBeGreaterThan(800 + 200);
    expect([meta.exif, meta.xmp, meta.icc]).toEqual([undefined, undefined, undefined]);
    const json = JSON.parse(readFileSync(r.json, 'utf8')) as {
      faces: Array<{ landmarks: unknown[]; quad: unknown[] }>;
      alignSize: number;
    };
    expect(json.faces).toHaveLength(3);
    expect(json.faces[0].landmarks).toHaveLength(68);
    expect(json.faces[0].quad).toHaveLength(4);
    expect(json.alignSize).toBe(256);
  });

  it('exits 2 with a typed one-line error for bad inputs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-bad-'));
    const text = join(dir, 'notes.jpg');
    writeFileSync(text, 'this is not an image\n');
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'functions/cli/main.ts', 'faces', text, '--out', dir],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error \[unsupported_format\]: Unsupported image format \(text\)/m);
    const bad = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'functions/cli/main.ts', 'faces', text, '--out', dir, '--size', 'x'],
      { encoding: 'utf8' },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/invalid-options.*--size/);
  });
});
