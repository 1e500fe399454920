/**
 * Synthesizes the service once per scenario for the CDK tests: no esbuild bundling (inline code
 * with the same runtime/architecture/handler props) and a temporary cloud assembly directory.
 * The cdk-nag plugin runs exactly as in `npm run cdk -- synth`; its findings are read from the
 * policy validation report the synthesis writes.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { buildApp } from '../../cdk/app.js';
import type { ServiceStack, ServiceStackProps } from '../../cdk/stacks/service-stack.js';

export interface Violation {
  plugin: string;
  rule: string;
  severity: string;
  paths: string[];
}

export interface Synthesized {
  stack: ServiceStack;
  template: Template;
  /** Raw template JSON (for lookups Template's matchers make awkward). */
  json: { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
  /** Violations from the policy validation report (cdk-nag and construct annotations). */
  violations: Violation[];
  /** Set when synthesis failed (validation violations); undefined on a clean synth. */
  synthError?: Error;
  /** Plugins that ran. */
  plugins: string[];
  outdir: string;
  assets: {
    dockerImages?: Record<string, { source: { directory: string; dockerFile?: string; platform?: string } }>;
  };
  cleanup: () => void;
}

export function synthService(
  context: Record<string, unknown> = {},
  overrides: Partial<ServiceStackProps> = {},
  /** Adds constructs to the stack before synthesis (e.g. a deliberately non-compliant resource). */
  extend?: (stack: ServiceStack) => void,
): Synthesized {
  const outdir = mkdtempSync(path.join(tmpdir(), 'cdk-test-'));
  const { app, stack } = buildApp({
    outdir,
    // The layer is required by default (a deploy without it ships a broken API); most scenarios look at
    // other things and synthesize without one, as `-c requireSharpLayer=false` does.
    context: { requireSharpLayer: 'false', ...context },
    stackOverrides: {
      functionCode: () => lambda.Code.fromInline('export const handler = async () => ({});'),
      // A directory that never exists: the default tests see "layer not built" unless they pass one.
      sharpLayerDir: path.join(outdir, 'no-sharp-layer'),
      ...overrides,
    },
  });
  extend?.(stack);
  // Synthesis throws when a validation plugin (cdk-nag) reports a violation; the templates and the
  // report are written before that, so read everything from the output directory either way.
  let synthError: Error | undefined;
  try {
    app.synth();
  } catch (err) {
    synthError = err as Error;
    if (!existsSync(path.join(outdir, 'validation-report.json'))) throw err;
  }
  const template = JSON.parse(readFileSync(path.join(outdir, `${stack.stackName}.template.json`), 'utf8'));
  const report = JSON.parse(readFileSync(path.join(outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: {
      pluginName: string;
      violations: { ruleName: string; severity: string; violatingConstructs: { constructPath: string }[] }[];
    }[];
  };
  const violations = report.pluginReports.flatMap((p) =>
    p.violations.map((v) => ({
      plugin: p.pluginName,
      rule: v.ruleName,
      severity: v.severity,
      paths: v.violatingConstructs.map((c) => c.constructPath),
    })),
  );
  return {
    stack,
    template: Template.fromJSON(template as Record<string, unknown>),
    json: template as Synthesized['json'],
    synthError,
    violations,
    plugins: report.pluginReports.map((p) => p.pluginName),
    outdir,
    assets: JSON.parse(readFileSync(path.join(outdir, `${stack.stackName}.assets.json`), 'utf8')),
    cleanup: () => rmSync(outdir, { recursive: true, force: true }),
  };
}

/** Logical id of the CloudFormation resource behind an L2 construct. */
export function logicalId(s: Synthesized, construct: { node: { defaultChild?: unknown } }): string {
  return s.stack.getLogicalId(construct.node.defaultChild as never);
}
