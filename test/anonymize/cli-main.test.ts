/** The CLI's front door: every error is one line (stack only with --verbose), usage errors exit 2, --help has examples. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatError, main } from '../../functions/cli/main.js';
import { CliError } from '../../functions/cli/errors.js';
import { BundleError } from '../../models/bundle/manifest.js';

/** Run the CLI in-process, capturing what it prints. */
async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    const code = await main(['node', 'falco', ...args]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}
afterEach(() => {
  process.exitCode = undefined;
});

const oneLine = (s: string) => s.trimEnd().split('\n').length === 1;

describe('falco CLI errors and help', () => {
  it('a missing input is one line with its code, exit 2', async () => {
    const out = await mkdtemp(join(tmpdir(), 'falco-cli-main-'));
    const r = await run('anonymize', join(out, 'nothing.jpg'), '--out', out);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error \[not-found\]: input .*nothing\.jpg does not exist\n$/);
  });

  it('usage errors are one line pointing at --help', async () => {
    for (const args of [
      ['anonymize', 'x.jpg'],
      ['anonymize', 'x.jpg', '--out', 'o', '--format', 'gif'],
      ['nope'],
    ]) {
      const r = await run(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(oneLine(r.err), r.err).toBe(true);
      expect(r.err).toMatch(/^error: .*\(see --help\)$/m);
    }
    const url = await run('submit', '.', '--api', 'not-a-url', '--key', 'k');
    expect(url.code).toBe(2);
    expect(url.err).toBe(
      'error [invalid-url]: API URL "not-a-url" is not a URL (e.g. http://localhost:8787)\n',
    );
  });

  it('unexpected errors: one line and a hint, the stack only with --verbose', () => {
    const boom = new Error('disk on fire\nsecond line');
    const plain = formatError(boom, false);
    expect(plain).toBe('error: disk on fire second line (run again with --verbose for details)\n');
    expect(formatError(boom, true)).toContain('at ');
    expect(formatError(new CliError('missing-config', 'KEYS_TABLE is not set'), false)).toBe(
      'error [missing-config]: KEYS_TABLE is not set\n',
    );
    expect(oneLine(formatError(new BundleError('no model bundle at /x'), false))).toBe(true);
  });

  it('--help shows examples, for the program and for each command', async () => {
    const top = await run('--help');
    expect(top.code).toBe(0);
    expect(top.out).toMatch(/Examples:[\s\S]*anonymize[\s\S]*submit/);
    for (const cmd of ['anonymize', 'submit']) {
      const r = await run(cmd, '--help');
      expect(r.code).toBe(0);
      expect(r.out).toContain('Examples:');
      expect(r.out).toContain(`npm run cli -- ${cmd}`);
    }
  });
});
