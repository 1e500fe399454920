/**
 * The demo page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): upload a sample
 * photo, watch progress, see the result next to the original. Keeps a screenshot.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startLocalStack, type LocalStack } from '../../functions/local/stack.js';
import { mkdtemp } from 'node:fs/promises';
import { createAnonymizer } from '../../functions/pipeline/anonymize.js';
import { buildDemoBundle } from '../../models/bundle/demo.js';
import { SAMPLE_PATH } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`web.test: skipped — ${CHROMIUM} not found (apt-get install -y chromium)`);

export const SCREENSHOT = join(
  process.env.SCREENSHOT_DIR ?? join(tmpdir(), 'falco-screenshots'),
  'web-demo.png',
);

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

  it('uploads a photo, shows progress, then before/after', async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(stack.url + '/');
    await expect(page.title()).resolves.toBe('FALCO — face anonymization demo');
    await page.setInputFiles('#file', SAMPLE_PATH);
    await page.fill('#steps', '50');
    // Record every status/progress the page shows (the job takes a few seconds; polling waits could miss it).
    await page.evaluate(`(() => {
      window.__seen = [];
      const note = () => window.__seen.push([document.getElementById('status').textContent, Number(document.getElementById('bar').value)]);
      new MutationObserver(note).observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
    })()`);
    await page.click('#go');
    await page.waitForFunction("document.getElementById('status').textContent.startsWith('Done')", null, {
      timeout: 120_000,
    });
    const seen = (await page.evaluate('window.__seen')) as Array<[string, number]>;
    expect(
      seen.some(([text]) => /: running/.test(text)),
      JSON.stringify(seen),
    ).toBe(true);
    const bars = seen.map(([, v]) => v);
    expect(
      bars.every((v, i) => i === 0 || v >= bars[i - 1]!),
      'progress never goes back',
    ).toBe(true);
    expect(await page.textContent('#status')).toBe('Done: 3 faces anonymized.');
    // Both images actually loaded (naturalWidth > 0), at the photo's size.
    await page.waitForFunction(
      "['before', 'after'].every((id) => document.getElementById(id).naturalWidth > 0)",
    );
    expect(
      await page.evaluate("['before', 'after'].map((id) => document.getElementById(id).naturalWidth)"),
    ).toEqual([1920, 1920]);
    expect(await page.evaluate("document.getElementById('bar').value")).toBe(1);
    expect(await page.textContent('#engine')).not.toContain('stand-in');
    mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(errors).toEqual([]);
  });
});
