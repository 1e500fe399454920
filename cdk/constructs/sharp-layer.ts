import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

/** Where layers/sharp/build.ts writes the layer (a Lambda layer zip root: nodejs/node_modules/...). */
export const SHARP_LAYER_DIR = fileURLToPath(new URL('../../layers/sharp/dist', import.meta.url));

export interface SharpLayerProps {
  /** Layer root directory; default SHARP_LAYER_DIR. */
  readonly dir?: string;
  /** Fail the synth when the layer has not been built (set for real deployments). */
  readonly required: boolean;
  /** Must match the architecture the layer was built for and the functions using it. */
  readonly architecture: lambda.Architecture;
}

/**
 * The sharp layer is built ahead of time by `layers/sharp/build.ts`, never during synth:
 * building it needs the npm registry (sharp's prebuilt linux-arm64 binaries are not in a
 * developer's node_modules), and synth must work offline on a fresh clone.
 *
 * So this construct references the built directory when present; when absent it yields no
 * layer and a warning (or an error with required=true, which the deployment instructions set,
 * so an API without sharp can never be deployed by accident).
 */
export class SharpLayer extends Construct {
  readonly layer?: lambda.ILayerVersion;

  constructor(scope: Construct, id: string, props: SharpLayerProps) {
    super(scope, id);
    const dir = props.dir ?? SHARP_LAYER_DIR;
    const marker = path.join(dir, 'nodejs', 'node_modules', 'sharp', 'package.json');
    if (!existsSync(marker)) {
      const msg =
        `sharp layer not built (${marker} missing): run "npx tsx layers/sharp/build.ts" before deploying; ` +
        'without it the API cannot process images';
      if (props.required) Annotations.of(this).addError(msg);
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
