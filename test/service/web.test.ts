/**
 * The demo page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): upload a sample
 * photo, watch progress, see the result next to the original. Keeps a screenshot.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { mkdtemp } from 'node:fs/promises';
import { createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { SAMPLE_PATH } from './helpers.js';
import type { ImageReport } from '../../functions/pipeline/types.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`web.test: skipped — ${CHROMIUM} not found (apt-get install -y chromium)`);

export const SCREENSHOT = join(
  process.env.SCREENSHOT_DIR ?? join(tmpdir(), 'falco-screenshots'),
  'web-demo.png',
);
export const SCREENSHOT_MOBILE = join(SCREENSHOT, '..', 'web-demo-mobile.png');

describe.skipIf(!haveChromium)('demo web page', () => {
  let stack: LocalStack;
  let browser: Browser;

  beforeAll(async () => {
    // The real engine on the demo bundle, as `npm start` runs it.
    const bundleDir = join(await mkdtemp(join(tmpdir(), 'falco-web-')), 'demo');
    await buildDemoBundle({ outDir: bundleDir, poolSize: 8 });
    stack = await startLocalStack({
      port: 0,
      anonymizer: await createAnonymizer({ bundleDir }),
      worker: { visibilityTimeout: 10 },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  /** Drop two files on the page (a photo and a text file named .jpg) and wait until both cards are finished. */
  async function runPage(viewport: { width: number; height: number }, shot: string) {
    const page = await browser.newPage({ viewport });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(stack.url + '/');
    await expect(page.title()).resolves.toBe('FALCO — face anonymization demo');
    // Before anything is added: the demo-bundle explanation, and no image at all (no broken placeholders).
    expect(await page.textContent('#notice')).toMatch(/pattern weights[\s\S]*abstract colour renders/);
    expect(await page.textContent('#notice')).toContain('npm run models -- build --falco');
    expect(await page.locator('img').count()).toBe(0);
    await page.fill('#steps', '50');
    await page.evaluate(`(() => {
      window.__seen = [];
      new MutationObserver(() => {
        for (const c of document.querySelectorAll('.card')) window.__seen.push([c.querySelector('h3').textContent, c.querySelector('.pill').textContent, c.querySelector('.progress > div').style.width]);
      }).observe(document.getElementById('results'), { subtree: true, childList: true, characterData: true, attributes: true });
    })()`);
    await page.setInputFiles('#file', [
      { name: 'sample1.jpg', mimeType: 'image/jpeg', buffer: readFileSync(SAMPLE_PATH) },
      {
        name: 'notes.jpg',
        mimeType: 'image/jpeg',
        buffer: Buffer.from('name,email\nalice,alice@example.com\n'),
      },
    ]);
    await page.waitForFunction("document.querySelectorAll('.card.done, .card.failed').length === 2", null, {
      timeout: 180_000,
    });
    const done = page.locator('.card.done');
    const failed = page.locator('.card.failed');
    await expect(done.locator('h3').textContent()).resolves.toBe('sample1.jpg');
    // The failed file explains why and what to change.
    await expect(failed.locator('h3').textContent()).resolves.toBe('notes.jpg');
    const why = (await failed.locator('.why').textContent())!;
    expect(why).toMatch(/Why it failed: image 1 \(notes\.jpg\).* looks like text/);
    expect(why).toMatch(/What to change: Only JPEG, PNG and WebP/);
    expect(why).toContain('error code: unsupported-image-type');
    // The done card: both pictures loaded at the photo's size, one box per face on each, one table row
    // per face with its identity verdict, three loss charts with one curve per face.
    await page.waitForFunction(
      "[...document.querySelectorAll('.card.done .frame img')].filter((i) => i.naturalWidth > 0).length === 2",
    );
    expect(
      await done
        .locator('.frame img')
        .evaluateAll((l) => l.map((i) => (i as unknown as { naturalWidth: number }).naturalWidth)),
    ).toEqual([1920, 1920]);
    // Three faces found; the residual scan may add covered rows (a high-recall scan errs on the safe side).
    const faces = await done.locator('tbody tr').count();
    expect(faces).toBeGreaterThanOrEqual(3);
    expect(await done.locator('.frame').first().locator('svg rect[fill="none"]').count()).toBe(faces);
    expect(await done.locator('.frame').last().locator('svg rect[fill="none"]').count()).toBe(faces);
    expect(await done.locator('tbody').textContent()).toMatch(/different person|still recognisable/);
    // Per face, from the card's own raw report: the box, and the utility comparison (original → anonymized,
    // both measured) for FALCO faces or "n/a" for fallback faces (issue #10).
    const report = JSON.parse((await done.locator('details pre').textContent())!) as ImageReport;
    const rows = await done.locator('tbody tr').allTextContents();
    report.faces.forEach((f, i) => {
      expect(rows[i]).toContain(`at ${Math.round(f.box.x)},${Math.round(f.box.y)} · `);
      const a = f.attributes;
      if (!a) {
        expect(f.method).not.toBe('falco');
        expect(rows[i]).toContain(`n/a (${f.method}`);
        return;
      }
      const sex = (g: string) => (g === 'female' ? 'F' : 'M');
      for (const bit of [
        `age ${a.original.age.toFixed(0)}→${a.anonymized.age.toFixed(0)}`,
        `${sex(a.original.gender)}→${sex(a.anonymized.gender)}`,
        `${a.original.expression}→${a.anonymized.expression}`,
        `pose Δ${a.change.poseDeltaDeg.toFixed(0)}°`,
      ])
        expect(rows[i]).toContain(bit);
    });
    expect(report.faces.some((f) => f.attributes)).toBe(true);
    expect(await done.locator('.summary').textContent()).toMatch(
      /^3 faces found · (\d+ more found on the output by the residual scan · )?bundle demo-[0-9a-f]+ \(demo\)/,
    );
    expect(await done.locator('.chart svg').count()).toBe(3);
    expect(await done.locator('.chart svg').first().locator('polyline').count()).toBe(3); // FALCO faces
    await expect(page.textContent('#notice')).resolves.toMatch(/bundle demo-/);
    // Progress was shown while it ran, and never went back.
    const seen = (await page.evaluate('window.__seen')) as Array<[string, string, string]>;
    const mine = seen.filter(([name]) => name === 'sample1.jpg');
    expect(
      mine.some(([, pill]) => pill === 'running'),
      JSON.stringify(mine.slice(0, 20)),
    ).toBe(true);
    const widths = mine.map(([, , w]) => Number.parseFloat(w) || 0);
    expect(
      widths.every((v, i) => i === 0 || v >= widths[i - 1]!),
      'progress never goes back',
    ).toBe(true);
    // No broken image anywhere on the page.
    expect(await page.evaluate('[...document.images].every((i) => i.complete && i.naturalWidth > 0)')).toBe(
      true,
    );
    mkdirSync(join(shot, '..'), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    expect(existsSync(shot)).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  }

  it('desktop: several photos at once, progress, before/after with boxes, verdicts, curves, a failure explained', async () => {
    await runPage({ width: 1280, height: 900 }, SCREENSHOT);
  });

  it('narrow mobile viewport: the same page, stacked', async () => {
    await runPage({ width: 390, height: 844 }, SCREENSHOT_MOBILE);
  });
});
