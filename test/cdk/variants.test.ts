import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharpLayer } from '../../cdk/constructs/sharp-layer.js';
import { buildApp } from '../../cdk/app.js';
import { lockedSharpVersion } from '../../layers/sharp/build.js';
import { logicalId, synthService, type Synthesized } from './synth.js';

/** A layer directory shaped like layers/sharp/build.ts output (without the binaries' contents). */
function fakeLayer(dir: string, m: { arch?: string; sharp?: string; img?: boolean } = {}): string {
  const arch = m.arch ?? 'arm64';
  const pkg = path.join(dir, 'nodejs', 'node_modules', 'sharp');
  mkdirSync(pkg, { recursive: true });
  const version = m.sharp ?? lockedSharpVersion();
  writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'sharp', version }));
  if (m.img ?? true)
    mkdirSync(path.join(dir, 'nodejs', 'node_modules', '@img', `sharp-linux-${arch}`), { recursive: true });
  writeFileSync(
    path.join(dir, 'nodejs', 'layer.json'),
    JSON.stringify({ sharp: version, arch, libc: 'glibc' }),
  );
  return dir;
}

// One synthesis of the non-default configuration: Spot workers on two instance types, a model
// bundle in an operator's own bucket, a built sharp layer, a longer job visibility — plus a
// deliberately non-compliant bucket, the control proving cdk-nag really runs on this app (and
// that this configuration's own resources, Spot ASG and external bundle grant included, pass).
let s: Synthesized;
let layerDir: string;
beforeAll(() => {
  layerDir = fakeLayer(mkdtempSync(path.join(tmpdir(), 'sharp-layer-')));
  s = synthService(
    {
      stage: 'prod',
      spot: 'true',
      instanceType: 'g6.xlarge,g5.xlarge',
      minTasks: '0',
      maxTasks: '8',
      bundleUri: 's3://operator-models/falco/v3/',
      jobVisibilitySeconds: '1800',
      retentionDays: '30',
      requireSharpLayer: 'true',
    },
    { sharpLayerDir: layerDir },
    (stack) => new s3.Bucket(stack, 'Injected'),
  );
});
afterAll(() => {
  s?.cleanup();
  rmSync(layerDir, { recursive: true, force: true });
});

describe('spot option', () => {
  it('adds a Spot capacity provider over all instance types and runs the service on it', () => {
    const spot = s.stack.workers.spotProvider!;
    expect(spot).toBeDefined();
    s.template.resourceCountIs('AWS::ECS::CapacityProvider', 2);
    s.template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      MinSize: '0',
      MaxSize: '8',
      MixedInstancesPolicy: {
        InstancesDistribution: Match.objectLike({
          OnDemandBaseCapacity: 0,
          OnDemandPercentageAboveBaseCapacity: 0,
          SpotAllocationStrategy: 'price-capacity-optimized',
        }),
        LaunchTemplate: Match.objectLike({
          Overrides: [{ InstanceType: 'g6.xlarge' }, { InstanceType: 'g5.xlarge' }],
        }),
      },
    });
    s.template.hasResourceProperties('AWS::ECS::Service', {
      CapacityProviderStrategy: [
        { CapacityProvider: { Ref: Match.stringLikeRegexp('^WorkersSpotCapacity') }, Weight: 1 },
      ],
    });
    // Spot interruptions drain the instance so ECS stops the task gracefully.
    s.template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        UserData: {
          'Fn::Base64': {
            'Fn::Join': [
              '',
              Match.arrayWith([Match.stringLikeRegexp('ECS_ENABLE_SPOT_INSTANCE_DRAINING=true')]),
            ],
          },
        },
      }),
    });
  });
});

describe('external model bundle', () => {
  it('passes BUNDLE_URI through and grants read on that prefix only, without a models bucket', () => {
    expect(s.stack.storage.models).toBeUndefined();
    expect(s.stack.bundleUri).toBe('s3://operator-models/falco/v3/');
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([{ Name: 'BUNDLE_URI', Value: 's3://operator-models/falco/v3/' }]),
        }),
      ],
    });
    const policies = Object.values(s.json.Resources).filter((r) => r.Type === 'AWS::IAM::Policy');
    const text = JSON.stringify(policies);
    expect(text).toContain(':s3:::operator-models/falco/v3/*');
    expect(text).not.toContain(':s3:::operator-models/*"');
  });
});

describe('configuration', () => {
  it('applies job visibility and retention from context; prod retains data', () => {
    s.template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 1800,
      RedrivePolicy: Match.objectLike({ maxReceiveCount: 3 }),
    });
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([Match.objectLike({ Prefix: 'results/', ExpirationInDays: 30 })]),
      },
    });
    s.template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });
});

describe('sharp layer', () => {
  it('attaches the built layer (arm64, nodejs22.x) to the API function only', () => {
    const layer = s.stack.sharpLayer.layer!;
    expect(layer).toBeDefined();
    s.template.hasResourceProperties('AWS::Lambda::LayerVersion', {
      CompatibleArchitectures: ['arm64'],
      CompatibleRuntimes: ['nodejs22.x'],
    });
    const layerId = logicalId(s, layer as never);
    const api = s.json.Resources[logicalId(s, s.stack.functions.api)].Properties!;
    expect(api.Layers).toEqual([{ Ref: layerId }]);
    for (const fn of [s.stack.functions.complete, s.stack.functions.webhooks, s.stack.functions.dlq]) {
      expect(s.json.Resources[logicalId(s, fn)].Properties!.Layers).toBeUndefined();
    }
  });

  it('fails the synth when the layer is required but not built', () => {
    // An error annotation is what makes `cdk synth`/`cdk deploy` exit non-zero.
    const stack = new Stack(new App(), 'LayerOnly');
    const missing = new SharpLayer(stack, 'Sharp', {
      dir: path.join(layerDir, 'missing'),
      required: true,
      architecture: lambda.Architecture.ARM_64,
    });
    expect(missing.layer).toBeUndefined();
    Annotations.fromStack(stack).hasError(
      '/LayerOnly/Sharp',
      Match.stringLikeRegexp('sharp layer not built'),
    );
    const app2 = new App();
    const ok = new SharpLayer(new Stack(app2, 'LayerOk'), 'Sharp', {
      dir: layerDir,
      required: true,
      architecture: lambda.Architecture.ARM_64,
    });
    expect(ok.layer).toBeDefined();
  });

  it('refuses a layer built for another architecture, without libvips, or for another sharp version', () => {
    const cases: Array<[Parameters<typeof fakeLayer>[1], RegExp]> = [
      [{ arch: 'x64' }, /built for linux-x64 \(glibc\), the functions run on linux-arm64/],
      [{ img: false }, /lacks @img\/sharp-linux-arm64/],
      [{ sharp: '0.0.1' }, /has sharp 0\.0\.1, package-lock\.json has \d/],
    ];
    for (const [i, [m, re]] of cases.entries()) {
      const stack = new Stack(new App(), `Bad${i}`);
      // required: false still fails: a layer that is there but wrong is never a safe default.
      const bad = new SharpLayer(stack, 'Sharp', {
        dir: fakeLayer(path.join(layerDir, `bad${i}`), m),
        required: false,
        architecture: lambda.Architecture.ARM_64,
      });
      expect(bad.layer).toBeUndefined();
      Annotations.fromStack(stack).hasError(`/Bad${i}/Sharp`, Match.stringLikeRegexp(re.source));
    }
  });

  it('is required by default: the app fails its synth without a built layer', () => {
    const { app, stack } = buildApp({
      outdir: mkdtempSync(path.join(tmpdir(), 'cdk-default-')),
      stackOverrides: {
        sharpLayerDir: path.join(layerDir, 'never-built'),
        functionCode: () => lambda.Code.fromInline('export const handler = async () => ({});'),
      },
    });
    expect(stack.sharpLayer.layer).toBeUndefined();
    expect(() => app.synth()).toThrow(/sharp layer not built .*npm run cdk -- deploy/);
  });
});

describe('cdk-nag', () => {
  it('flags the injected non-compliant bucket and nothing else', () => {
    const nag = s.violations.filter((v) => v.plugin === 'AwsSolutions');
    const rules = new Set(nag.map((v) => v.rule));
    // S1: no access logs; S10: TLS not enforced. Proves the pack runs on this app.
    expect(rules.has('AwsSolutions-S1')).toBe(true);
    expect(rules.has('AwsSolutions-S10')).toBe(true);
    for (const v of nag) for (const p of v.paths) expect(p, v.rule).toMatch(/\/Injected(\/|$)/);
    expect(s.synthError?.message).toMatch(/AwsSolutions-S10/);
  });
});
