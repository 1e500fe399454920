/**
 * The parity runner over the golden fixtures directory, case by case: exactly what
 * `npm run parity -- test/fixtures/falco` checks. Cases marked slow run with FALCO_SLOW=1.
 */
import { describe, expect, it } from 'vitest';
import { requireFixturesDir } from '../../models/fixtures/paths.js';
import { readCases, runParity } from '../../models/parity/run.js';

const dir = requireFixturesDir();
const slow = process.env.FALCO_SLOW === '1';

describe(`parity with the upstream goldens (${dir})`, () => {
  for (const c of readCases(dir)) {
    it.skipIf(c.slow && !slow)(`${c.name} (${c.kind})`, async () => {
      const [r] = await runParity(dir, { only: [c.name], slow });
      expect(r!.error ?? '', r!.line).toBe('');
      expect(r!.status, r!.line).toBe('pass');
      expect(r!.checks.length).toBeGreaterThan(0);
    });
  }
  it('a case of an unknown kind fails loudly instead of passing silently', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const d = mkdtempSync(join(tmpdir(), 'parity-'));
    writeFileSync(
      join(d, 'cases.json'),
      JSON.stringify({ format: 1, cases: [{ name: 'x', kind: 'nonexistent' }] }),
    );
    const [r] = await runParity(d);
    expect(r!.status).toBe('fail');
    expect(r!.line).toMatch(/no handler for kind "nonexistent"/);
  });
});
