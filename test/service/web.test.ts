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
import { createStandInAnonymizer } from '../../functions/local/stand-in.js';
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
    stack = await startLocalStack({
      port: 0,
      anonymizer: createStandInAnonymizer({ stepMs: 300 }),
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
    await page.fill('#steps', '12');
    await page.click('#go');
    // Progress is visible while the (slowed) stand-in works.
    // (Browser-side predicates are strings: this project's tsconfig has no DOM lib.)
    await page.waitForFunction(
      "document.getElementById('bar').value > 0 && document.getElementById('status').textContent.includes('running')",
      null,
      { timeout: 30_000 },
    );
    await page.waitForFunction("document.getElementById('status').textContent.startsWith('Done')", null, {
      timeout: 60_000,
    });
    expect(await page.textContent('#status')).toBe('Done: 1 face anonymized.');
    // Both images actually loaded (naturalWidth > 0), at the photo's size.
    await page.waitForFunction(
      "['before', 'after'].every((id) => document.getElementById(id).naturalWidth > 0)",
    );
    expect(
      await page.evaluate("['before', 'after'].map((id) => document.getElementById(id).naturalWidth)"),
    ).toEqual([1920, 1920]);
    expect(await page.evaluate("document.getElementById('bar').value")).toBe(1);
    expect(await page.textContent('#engine')).toContain('test stand-in');
    mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(errors).toEqual([]);
  });
});
