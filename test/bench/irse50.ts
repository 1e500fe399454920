/**
 * IR-SE50 networks on this machine: ArcFace at 112 px (forward, and forward + input gradient, what
 * each FALCO step pays) and the e4e encoder at 256 px (forward; once per face). Weights are the fixture
 * pattern specs, so no checkpoint is needed. `npm run bench -- irse50 [threads]`.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import * as E from '../../models/engine/index.js';
import { loadSpec, pattern, requireFixturesDir } from '../../models/fixtures/index.js';
import { ARCFACE_INPUT, buildArcFace, loadArcFaceWeights } from '../../models/networks/arcface.js';
import { E4E_INPUT, buildE4E, loadE4EWeights } from '../../models/networks/e4e.js';
import { report, timeIt } from './report.js';

export default async function main(args: string[] = []): Promise<void> {
  const threads = args[0] ? Number(args[0]) : undefined;
  const dir = requireFixturesDir();
  const opts = { provider: 'cpu' as const, ...(threads ? { threads } : {}) };
  // The cores are shared: the 5 and 15 min load averages say how busy the machine was meanwhile.
  const meta = () => ({
    threads: threads ?? 'default',
    load5: +loadavg()[1]!.toFixed(2),
    load15: +loadavg()[2]!.toFixed(2),
  });

  const measure = async (
    bench: string,
    figure: string,
    g: E.Graph,
    feeds: Record<string, Float32Array>,
    extra: Record<string, unknown>,
  ) => {
    let t = performance.now();
    const bytes = E.toBytes(g);
    report(bench, `${figure}_build_serialize`, performance.now() - t, 'ms', {
      ...meta(),
      mbytes: Math.round(bytes.byteLength / 2 ** 20),
    });
    t = performance.now();
    const s = await E.Session.create(bytes, opts);
    report(bench, `${figure}_session_create`, performance.now() - t, 'ms', meta());
    const ms = await timeIt(() => s.run(feeds), 3, 1);
    report(bench, figure, ms, 'ms', { ...meta(), ...extra });
    await s.release();
  };

  const arc = loadArcFaceWeights(loadSpec(join(dir, 'arcface_irse50.spec.json')));
  const x112 = pattern('input.arcface', 3 * ARCFACE_INPUT ** 2, -1, 1);
  for (const withGrad of [false, true]) {
    const g = new E.Graph('arcface');
    const x = g.input('x', [1, 3, ARCFACE_INPUT, ARCFACE_INPUT]);
    const feat = buildArcFace(g, arc, x);
    g.output(feat, 'feat');
    if (withGrad)
      g.output(
        E.grad(feat, [x], g.constant(pattern('probe.arcface', 512, -1, 1), [1, 512]))[0]!,
        'grad_input',
      );
    await measure(
      'irse50',
      withGrad ? 'arcface_forward_backward_112' : 'arcface_forward_112',
      g,
      { x: x112 },
      { resolution: 112 },
    );
  }

  const e4e = loadE4EWeights(loadSpec(join(dir, 'e4e_irse50.spec.json')));
  const g = new E.Graph('e4e');
  const x = g.input('x', [1, 3, E4E_INPUT, E4E_INPUT]);
  const { codes, wplus } = buildE4E(g, e4e, x);
  g.output(codes, 'codes');
  g.output(wplus, 'wplus');
  await measure(
    'irse50',
    'e4e_forward_256',
    g,
    { x: pattern('input.e4e', 3 * E4E_INPUT ** 2, -1, 1) },
    { resolution: 256 },
  );
}
