#!/usr/bin/env node
/**
 * `npm run cdk -- <command> [args]`: the CDK CLI with this app, plus what a first deploy needs done first.
 *
 * For `deploy`, `synth` and `diff` the sharp layer is checked (layers/sharp/build.ts `layerProblem`: built, for
 * linux-arm64/glibc, at the locked sharp version) and rebuilt when it is missing or wrong, which needs the npm
 * registry. If that fails, the synth that follows stops with the reason (cdk/constructs/sharp-layer.ts), so an
 * API without a working sharp is never deployed. `-c requireSharpLayer=false` skips the layer (offline synth).
 */
import { spawnSync } from 'node:child_process';
import { buildLayer, DEFAULT_OUT, LayerBuildError, layerProblem } from '../../layers/sharp/build.js';

const args = process.argv.slice(2);
const command = args.find((a) => !a.startsWith('-'));
const layerOff = args.some(
  (a, i) => /^requireSharpLayer=false$/.test(a) && /^(-c|--context)$/.test(args[i - 1] ?? ''),
);

if (command && ['deploy', 'synth', 'diff'].includes(command) && !layerOff) {
  const problem = layerProblem(DEFAULT_OUT, 'arm64');
  if (problem) {
    console.error(`${problem}; building the sharp layer for linux-arm64 (npm registry)…`);
    try {
      const version = buildLayer({ arch: 'arm64', out: DEFAULT_OUT });
      console.error(`sharp ${version} layer written to ${DEFAULT_OUT}`);
    } catch (err) {
      // The synth below reports the missing layer as an error and stops; say why the build failed first.
      console.error(
        `sharp layer build failed: ${err instanceof LayerBuildError ? err.message : String(err)}`,
      );
    }
  }
}

const r = spawnSync('cdk', ['--app', 'tsx cdk/bin/app.ts', ...args], { stdio: 'inherit' });
if (r.error) {
  console.error(`could not run the CDK CLI: ${r.error.message} (run npm ci first)`);
  process.exit(1);
}
process.exit(r.status ?? 1);
