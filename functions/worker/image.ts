/**
 * `npm run image [-- --pin] [--tag falco-worker:dev]`: builds the worker image for linux/amd64 from
 * functions/worker/Dockerfile with its base images pinned by digest.
 *
 * The digests live in functions/worker/base-images.json ({tag, digest} per build argument). `--pin` (or a
 * missing entry) resolves the tags with `docker buildx imagetools inspect` and records the digests, so a
 * rebuild next month uses the same bytes until someone re-pins on purpose. Needs Docker with buildx.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PINS = path.join(REPO_ROOT, 'functions', 'worker', 'base-images.json');
/** The Dockerfile's defaults (tags); the pins add the digests. */
export const BASE_IMAGES: Record<string, string> = {
  NODE_IMAGE: 'node:22-bookworm-slim',
  CUDA_IMAGE: 'nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04',
};

type Pins = Record<string, { tag: string; digest: string }>;

function resolveDigest(tag: string): string {
  const out = execFileSync(
    'docker',
    ['buildx', 'imagetools', 'inspect', tag, '--format', '{{json .Manifest}}'],
    {
      encoding: 'utf8',
    },
  );
  const digest = (JSON.parse(out) as { digest?: string }).digest;
  if (!digest?.startsWith('sha256:')) throw new Error(`no digest for ${tag}`);
  return digest;
}

function main(argv: string[]): number {
  const pin = argv.includes('--pin');
  const t = argv.indexOf('--tag');
  const tag = t >= 0 ? argv[t + 1]! : 'falco-worker:latest';
  const pins: Pins = existsSync(PINS) ? (JSON.parse(readFileSync(PINS, 'utf8')) as Pins) : {};
  let changed = false;
  for (const [arg, image] of Object.entries(BASE_IMAGES)) {
    if (!pin && pins[arg]?.tag === image) continue;
    pins[arg] = { tag: image, digest: resolveDigest(image) };
    console.log(`pinned ${arg} = ${image}@${pins[arg].digest}`);
    changed = true;
  }
  if (changed) writeFileSync(PINS, JSON.stringify(pins, null, 2) + '\n');
  const args = [
    'buildx',
    'build',
    '--platform',
    'linux/amd64',
    '--load',
    '-f',
    'functions/worker/Dockerfile',
  ];
  for (const [arg, p] of Object.entries(pins)) args.push('--build-arg', `${arg}=${p.tag}@${p.digest}`);
  args.push('-t', tag, '.');
  console.log(`docker ${args.join(' ')}`);
  const r = spawnSync('docker', args, { cwd: REPO_ROOT, stdio: 'inherit' });
  return r.status ?? 1;
}

try {
  process.exit(main(process.argv.slice(2)));
} catch (err) {
  console.error(`image build failed: ${(err as Error).message}`);
  process.exit(1);
}
