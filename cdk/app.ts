import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Validations } from 'aws-cdk-lib';
import { CURRENTLY_RECOMMENDED_FLAGS } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadConfig } from './config.js';
import { ServiceStack, type ServiceStackProps } from './stacks/service-stack.js';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Builds the app. Shared by bin/app.ts and the tests so both synthesize exactly the same thing.
 * Feature flags: the values `cdk init` would write into cdk.json, set here instead so tests
 * (which construct the App directly, without the CLI reading cdk.json) see the same behaviour.
 */
export function buildApp(
  opts: {
    context?: Record<string, unknown>;
    outdir?: string;
    stackOverrides?: Partial<ServiceStackProps>;
  } = {},
): { app: App; stack: ServiceStack } {
  const app = new App({
    outdir: opts.outdir,
    context: { ...CURRENTLY_RECOMMENDED_FLAGS, ...opts.context },
  });
  const config = loadConfig((key) => app.node.tryGetContext(key));
  const requireSharpLayer = app.node.tryGetContext('requireSharpLayer');
  const stack = new ServiceStack(app, `Falco-${config.stage}`, {
    config,
    repoRoot: path.resolve(REPO_ROOT),
    description: `FALCO face anonymization service (${config.stage})`,
    // Environment-agnostic unless the CLI knows an account/region: synth stays offline.
    env:
      process.env.CDK_DEFAULT_ACCOUNT && process.env.CDK_DEFAULT_REGION
        ? { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION }
        : undefined,
    // Required unless explicitly switched off: a deploy without sharp ships an API that fails every request.
    requireSharpLayer: !(requireSharpLayer === false || requireSharpLayer === 'false'),
    ...opts.stackOverrides,
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return { app, stack };
}
