import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { layerProblem, type LayerArch } from '../../layers/sharp/build.js';

/** Where layers/sharp/build.ts writes the layer (a Lambda layer zip root: nodejs/node_modules/...). */
export const SHARP_LAYER_DIR = fileURLToPath(new URL('../../layers/sharp/dist', import.meta.url));

export interface SharpLayerProps {
  /** Layer root directory; default SHARP_LAYER_DIR. */
  readonly dir?: string;
  /**
   * Fail the synth when the layer has not been built (default in the stack: true; `-c requireSharpLayer=false`
   * allows an offline synth to look at the template, with a warning and an API that cannot decode images).
   * A layer that is present but wrong (architecture, libc, version) always fails the synth.
   */
  readonly required: boolean;
  /** Must match the architecture the layer was built for and the functions using it. */
  readonly architecture: lambda.Architecture;
  /** package-lock.json the layer's sharp version must match (default: the repository's). */
  readonly lockfile?: string;
}

/**
 * The sharp layer is built ahead of time by `layers/sharp/build.ts` (npm run cdk -- deploy does it when the
 * layer is missing or stale, see cdk/bin/cli.ts), never by the CDK app itself: building it needs the npm
 * registry (sharp's prebuilt linux-arm64 binaries are not in a developer's node_modules).
 *
 * This construct reads the layer's manifest (`nodejs/layer.json`: sharp version, arch, libc) and refuses a
 * layer built for another architecture or sharp version: an API whose sharp cannot load fails every request.
 */
export class SharpLayer extends Construct {
  readonly layer?: lambda.ILayerVersion;

  constructor(scope: Construct, id: string, props: SharpLayerProps) {
    super(scope, id);
    const dir = props.dir ?? SHARP_LAYER_DIR;
    const arch: LayerArch = props.architecture === lambda.Architecture.X86_64 ? 'x64' : 'arm64';
    const problem = layerProblem(dir, arch, props.lockfile);
    if (problem) {
      const missing = !existsSync(path.join(dir, 'nodejs', 'node_modules', 'sharp', 'package.json'));
      const msg =
        `${problem}: run "npm run layers${arch === 'arm64' ? '' : ` -- --arch ${arch}`}" (or deploy with ` +
        '"npm run cdk -- deploy", which builds it); without it the API cannot process images';
      if (props.required || !missing) Annotations.of(this).addError(msg);
      else Annotations.of(this).addWarningV2('falco:sharpLayerMissing', msg);
      return;
    }
    this.layer = new lambda.LayerVersion(this, 'Layer', {
      code: lambda.Code.fromAsset(dir),
      compatibleRuntimes: [lambda.Runtime.NODEJS_22_X],
      compatibleArchitectures: [props.architecture],
      description: 'sharp (libvips) for image decoding/encoding in the API',
    });
  }
}
