/**
 * Builds the Lambda layer that provides `sharp` to the API function:
 *
 *   npx tsx layers/sharp/build.ts [--arch arm64|x64] [--out layers/sharp/dist]
 *
 * The layer holds `nodejs/node_modules/sharp` plus the prebuilt libvips binaries for Linux/glibc
 * (Lambda's Amazon Linux 2023) of the requested CPU. Those binaries are not in a developer's
 * node_modules (npm only installs the host's platform), so this script asks the npm registry
 * for them — which is why it runs before `cdk deploy`, never during synth (synth stays offline;
 * cdk/constructs/sharp-layer.ts only references the directory this script produces).
 *
 * The sharp version is the one locked in package-lock.json, so the layer matches what the tests ran.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export class LayerBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerBuildError';
  }
}

export type LayerArch = 'arm64' | 'x64';

export interface LayerBuildOptions {
  arch: LayerArch;
  /** Layer root; receives nodejs/node_modules/... */
  out: string;
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const DEFAULT_OUT = path.join(REPO_ROOT, 'layers', 'sharp', 'dist');

export function parseArgs(argv: readonly string[]): LayerBuildOptions {
  const opts: LayerBuildOptions = { arch: 'arm64', out: DEFAULT_OUT };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new LayerBuildError(`${a} needs a value`);
      return v;
    };
    if (a === '--arch') {
      const v = value();
      if (v !== 'arm64' && v !== 'x64') throw new LayerBuildError(`--arch must be arm64 or x64, got "${v}"`);
      opts.arch = v;
    } else if (a === '--out') {
      opts.out = path.resolve(value());
    } else {
      throw new LayerBuildError(`unknown argument "${a}" (usage: build.ts [--arch arm64|x64] [--out DIR])`);
    }
  }
  return opts;
}

/** The sharp version locked for the project (the one the tests exercise). */
export function lockedSharpVersion(lockfile = path.join(REPO_ROOT, 'package-lock.json')): string {
  if (!existsSync(lockfile)) throw new LayerBuildError(`lockfile not found: ${lockfile}`);
  const lock = JSON.parse(readFileSync(lockfile, 'utf8')) as {
    packages?: Record<string, { version?: string }>;
  };
  const version = lock.packages?.['node_modules/sharp']?.version;
  if (!version) throw new LayerBuildError(`sharp is not in ${lockfile}; is it still a dependency?`);
  return version;
}

export function buildLayer(opts: LayerBuildOptions): string {
  const version = lockedSharpVersion();
  // Work outside the repository so its .npmrc and package.json play no part.
  const work = mkdtempSync(path.join(tmpdir(), 'sharp-layer-'));
  try {
    writeFileSync(
      path.join(work, 'package.json'),
      JSON.stringify({ name: 'sharp-layer', private: true, dependencies: { sharp: version } }, null, 2),
    );
    execFileSync(
      'npm',
      [
        'install',
        '--omit=dev',
        '--no-audit',
        '--no-fund',
        '--no-package-lock',
        // Select sharp's prebuilt optional packages for Lambda instead of the host's.
        '--os=linux',
        `--cpu=${opts.arch}`,
        '--libc=glibc',
      ],
      { cwd: work, stdio: 'inherit' },
    );
    const native = path.join(work, 'node_modules', '@img', `sharp-linux-${opts.arch}`);
    if (!existsSync(native)) {
      throw new LayerBuildError(
        `npm did not install @img/sharp-linux-${opts.arch}; the layer would not load on Lambda`,
      );
    }
    rmSync(opts.out, { recursive: true, force: true });
    mkdirSync(path.join(opts.out, 'nodejs'), { recursive: true });
    // Lambda puts /opt/nodejs/node_modules on the module path of Node.js runtimes.
    cpSync(path.join(work, 'node_modules'), path.join(opts.out, 'nodejs', 'node_modules'), {
      recursive: true,
    });
    writeFileSync(
      path.join(opts.out, 'nodejs', 'layer.json'),
      JSON.stringify({ sharp: version, arch: opts.arch, libc: 'glibc' }, null, 2) + '\n',
    );
    return version;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * What is wrong with a built layer, or null when it is usable for `arch`: the manifest this script writes
 * (nodejs/layer.json) must name the architecture, sharp must be there with its prebuilt libvips package for
 * that architecture, and its version must be the locked one (so the layer is what the tests ran). Read by the
 * CDK construct (a wrong layer stops the synth) and by `npm run cdk` (which rebuilds it before a deploy).
 */
export function layerProblem(dir: string, arch: LayerArch, lockfile?: string): string | null {
  const manifest = path.join(dir, 'nodejs', 'layer.json');
  if (!existsSync(path.join(dir, 'nodejs', 'node_modules', 'sharp', 'package.json')))
    return `sharp layer not built (${path.join(dir, 'nodejs', 'node_modules', 'sharp')} missing)`;
  if (!existsSync(manifest))
    return `sharp layer at ${dir} has no nodejs/layer.json: it was not built by layers/sharp/build.ts`;
  let m: { sharp?: string; arch?: string; libc?: string };
  try {
    m = JSON.parse(readFileSync(manifest, 'utf8')) as typeof m;
  } catch (e) {
    return `sharp layer manifest ${manifest} is not JSON (${(e as Error).message})`;
  }
  if (m.arch !== arch || m.libc !== 'glibc')
    return `sharp layer at ${dir} is built for linux-${m.arch ?? '?'} (${m.libc ?? '?'}), the functions run on linux-${arch} (glibc)`;
  if (!existsSync(path.join(dir, 'nodejs', 'node_modules', '@img', `sharp-linux-${arch}`)))
    return `sharp layer at ${dir} lacks @img/sharp-linux-${arch} (the prebuilt libvips binaries)`;
  const locked = lockedSharpVersion(lockfile);
  if (m.sharp !== locked)
    return `sharp layer at ${dir} has sharp ${m.sharp}, package-lock.json has ${locked}`;
  return null;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const opts = parseArgs(process.argv.slice(2));
    const version = buildLayer(opts);
    console.log(`sharp ${version} layer for linux-${opts.arch} (glibc) written to ${opts.out}`);
  } catch (err) {
    console.error(err instanceof LayerBuildError ? `layer build failed: ${err.message}` : err);
    process.exit(1);
  }
}
