import { Match } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS_MAX_RECEIVE_COUNT, WEBHOOKS_MAX_RECEIVE_COUNT } from '../../cdk/constructs/queues.js';
import { logicalId, synthService, type Synthesized } from './synth.js';
import {
  DEFAULT_STATUS_FILE,
  HEALTH_CHECK_SCRIPT,
  HEARTBEAT_MAX_AGE_S,
} from '../../functions/worker/health.js';

// One synthesis for the whole file (default configuration: on-demand GPUs, stack-owned models bucket).
let s: Synthesized;
beforeAll(() => {
  s = synthService({ stage: 'test' });
});
afterAll(() => s?.cleanup());

const CONTRACT_ENV = [
  'STAGE',
  'UPLOADS_BUCKET',
  'RESULTS_BUCKET',
  'JOBS_TABLE',
  'KEYS_TABLE',
  'USAGE_TABLE',
  'JOBS_QUEUE_URL',
  'WEBHOOKS_QUEUE_URL',
  'RETENTION_DAYS',
  'LOG_LEVEL',
];

function resourcesOfType(type: string): [string, Record<string, unknown>][] {
  return Object.entries(s.json.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties ?? {}]);
}

describe('storage', () => {
  it('sends results/ ObjectCreated events to the completion queue, consumed with partial batch failures', () => {
    s.template.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: logicalId(s, s.stack.storage.results) },
      NotificationConfiguration: {
        QueueConfigurations: [
          {
            Events: ['s3:ObjectCreated:*'],
            Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'results/' }] } },
            QueueArn: { 'Fn::GetAtt': [logicalId(s, s.stack.queues.completion), 'Arn'] },
          },
        ],
      },
    });
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(s, s.stack.functions.complete) },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(s, s.stack.queues.completion), 'Arn'] },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    // The completion queue has a DLQ, and the DLQ an alarm.
    s.template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(s, s.stack.queues.completionDlq), 'Arn'] },
        maxReceiveCount: 10,
      },
    });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [logicalId(s, s.stack.queues.completionDlq), 'QueueName'] },
        },
      ],
    });
    // The sweeper runs every minute.
    s.template.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(1 minute)' });
    // Worker crashes (non-zero exit) go to the alarm topic; workers may protect their own task from scale-in.
    s.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        'detail-type': ['ECS Task State Change'],
        detail: Match.objectLike({
          lastStatus: ['STOPPED'],
          containers: { exitCode: [{ 'anything-but': 0 }] },
        }),
      }),
      Targets: [Match.objectLike({ Arn: { Ref: logicalId(s, s.stack.observability.topic) } })],
    });
    s.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: Match.arrayWith(['ecs:UpdateTaskProtection']) }),
        ]),
      },
    });
  });

  it('denies non-TLS access on every bucket and blocks public access', () => {
    const buckets = resourcesOfType('AWS::S3::Bucket');
    expect(buckets.length).toBe(4); // uploads, results, models, access logs
    for (const [id, props] of buckets) {
      expect(props.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      // Photo buckets: SSE-KMS with the customer key (asserted below); the access-log bucket must be SSE-S3.
      const sse = (
        props.BucketEncryption as {
          ServerSideEncryptionConfiguration: Array<{
            ServerSideEncryptionByDefault: { SSEAlgorithm: string };
          }>;
        }
      ).ServerSideEncryptionConfiguration[0]!.ServerSideEncryptionByDefault.SSEAlgorithm;
      expect(sse, id).toBe(id.startsWith('StorageAccessLogs') ? 'AES256' : 'aws:kms');
      s.template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: id },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });

  it('expires uploads quickly and results after the retention', () => {
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'uploads/', ExpirationInDays: 1, Status: 'Enabled' }),
          Match.objectLike({ Prefix: 'inputs/', ExpirationInDays: 4, Status: 'Enabled' }),
        ]),
      },
    });
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'results/', ExpirationInDays: 7 }),
          Match.objectLike({ Prefix: 'reports/', ExpirationInDays: 7 }),
        ]),
      },
    });
  });

  it('creates three pk/sk tables with PITR, TTL and on-demand billing; jobs has gsi1', () => {
    const tables = resourcesOfType('AWS::DynamoDB::Table');
    expect(tables.length).toBe(3);
    for (const [id, props] of tables) {
      expect(props.KeySchema, id).toEqual([
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ]);
      expect(props.BillingMode, id).toBe('PAY_PER_REQUEST');
      expect(props.PointInTimeRecoverySpecification, id).toEqual({ PointInTimeRecoveryEnabled: true });
      expect(props.TimeToLiveSpecification, id).toEqual({ AttributeName: 'ttl', Enabled: true });
    }
    s.template.hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: [
        Match.objectLike({
          IndexName: 'gsi1',
          KeySchema: [
            { AttributeName: 'gsi1pk', KeyType: 'HASH' },
            { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
          ],
        }),
        Match.objectLike({
          IndexName: 'gsi2',
          KeySchema: [
            { AttributeName: 'gsi2pk', KeyType: 'HASH' },
            { AttributeName: 'gsi2sk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        }),
      ],
    });
  });
});

describe('queues', () => {
  it('redrives jobs to the jobs DLQ after 3 receives and webhooks to their own DLQ', () => {
    const q = s.stack.queues;
    expect(JOBS_MAX_RECEIVE_COUNT).toBe(3);
    s.template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 900,
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(s, q.jobsDlq), 'Arn'] },
        maxReceiveCount: 3,
      },
    });
    s.template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(s, q.webhooksDlq), 'Arn'] },
        maxReceiveCount: WEBHOOKS_MAX_RECEIVE_COUNT,
      },
    });
    // Exactly three queues have a redrive policy: the DLQs themselves have none.
    const withRedrive = resourcesOfType('AWS::SQS::Queue').filter(([, p]) => p.RedrivePolicy !== undefined);
    expect(withRedrive.map(([id]) => id).sort()).toEqual(
      [logicalId(s, q.jobs), logicalId(s, q.webhooks), logicalId(s, q.completion)].sort(),
    );
  });

  it('keeps the webhook queue visibility above the webhook function timeout', () => {
    const props = s.json.Resources[logicalId(s, s.stack.queues.webhooks)].Properties!;
    const fn = s.json.Resources[logicalId(s, s.stack.functions.webhooks)].Properties!;
    expect(props.VisibilityTimeout as number).toBeGreaterThanOrEqual(6 * (fn.Timeout as number));
  });

  it('consumes the webhook queue and the jobs DLQ with Lambda event sources', () => {
    const f = s.stack.functions;
    const q = s.stack.queues;
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId(s, q.webhooks), 'Arn'] },
      FunctionName: { Ref: logicalId(s, f.webhooks) },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId(s, q.jobsDlq), 'Arn'] },
      FunctionName: { Ref: logicalId(s, f.dlq) },
    });
    // Webhook batches fit the function timeout: each delivery has a 10 s total deadline.
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalId(s, q.webhooks), 'Arn'] },
      BatchSize: 4,
    });
    s.template.resourceCountIs('AWS::Lambda::EventSourceMapping', 3); // + completion queue
  });
});

describe('functions', () => {
  it('runs every service function on nodejs22.x / arm64 with the contract environment', () => {
    for (const fn of s.stack.functions.all) {
      const props = s.json.Resources[logicalId(s, fn)].Properties!;
      expect(props.Runtime, fn.node.id).toBe('nodejs22.x');
      expect(props.Architectures, fn.node.id).toEqual(['arm64']);
      expect(props.Handler, fn.node.id).toBe('index.handler');
      const env = (props.Environment as { Variables: Record<string, unknown> }).Variables;
      for (const name of CONTRACT_ENV) expect(env[name], `${fn.node.id} ${name}`).toBeDefined();
      expect(env.STAGE).toBe('test');
      expect(env.JOBS_QUEUE_URL).toEqual({ Ref: logicalId(s, s.stack.queues.jobs) });
      expect(env.RESULTS_BUCKET).toEqual({ Ref: logicalId(s, s.stack.storage.results) });
    }
  });

  it('puts the API behind an HTTP API with stage throttling and access logs', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
      AccessLogSettings: Match.objectLike({ DestinationArn: Match.anyValue() }),
    });
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      IntegrationType: 'AWS_PROXY',
      IntegrationUri: { 'Fn::GetAtt': [logicalId(s, s.stack.functions.api), 'Arn'] },
      PayloadFormatVersion: '2.0',
    });
  });

  it('omits the sharp layer (with a warning) when it has not been built', () => {
    const api = s.json.Resources[logicalId(s, s.stack.functions.api)].Properties!;
    expect(api.Layers).toBeUndefined();
    const warn = s.violations.find((v) => v.rule === 'Annotation::falco:sharpLayerMissing');
    expect(warn?.severity).toBe('warning');
  });
});

describe('GPU workers', () => {
  it('asks for one GPU and runs the worker image built from functions/worker/Dockerfile', () => {
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      NetworkMode: 'bridge',
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'worker',
          ResourceRequirements: [{ Type: 'GPU', Value: '1' }],
          StopTimeout: 120,
          Environment: Match.arrayWith([
            {
              Name: 'BUNDLE_URI',
              Value: {
                'Fn::Join': [
                  '',
                  ['s3://', { Ref: logicalId(s, s.stack.storage.models!) }, '/bundles/current/'],
                ],
              },
            },
          ]),
        }),
      ],
    });
    const images = Object.values(s.assets.dockerImages ?? {});
    expect(images.length).toBe(1);
    expect(images[0].source.dockerFile).toBe('functions/worker/Dockerfile');
    expect(images[0].source.platform).toBe('linux/amd64');
    const task = resourcesOfType('AWS::ECS::TaskDefinition')[0][1];
    const env = (task.ContainerDefinitions as { Environment: { Name: string }[] }[])[0].Environment.map(
      (e) => e.Name,
    );
    for (const name of CONTRACT_ENV) expect(env).toContain(name);
  });

  it('has a container health check on the heartbeat of the status file the worker writes (node, no curl)', () => {
    const task = resourcesOfType('AWS::ECS::TaskDefinition')[0][1];
    const worker = (task.ContainerDefinitions as Record<string, unknown>[])[0];
    const hc = worker.HealthCheck as Record<string, unknown>;
    expect(hc).toMatchObject({ Interval: 30, Timeout: 10, Retries: 3, StartPeriod: 60 });
    const command = hc.Command as string[];
    expect(command.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect(command.slice(3)).toEqual([HEALTH_CHECK_SCRIPT, DEFAULT_STATUS_FILE, String(HEARTBEAT_MAX_AGE_S)]);
    expect(worker.Environment).toContainEqual({ Name: 'WORKER_STATUS_FILE', Value: DEFAULT_STATUS_FILE });
    // Unhealthy only after the grace, the checks and the max age: longer than the slowest stretch without a step.
    expect(HEARTBEAT_MAX_AGE_S).toBeGreaterThan(Number(hc.Interval) * Number(hc.Retries));
  });

  it('runs the worker on CUDA or not at all, with task protection and a crash-loop alarm', () => {
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'worker',
          Environment: Match.arrayWith([{ Name: 'FALCO_PROVIDER', Value: 'cuda' }]),
        }),
      ],
    });
    // Task scale-in protection is set by the worker through the ECS agent with the *task* role, on this
    // cluster's tasks only.
    const taskRole = logicalId(s, s.stack.workers.taskDefinition.taskRole as never);
    const policies = resourcesOfType('AWS::IAM::Policy').filter(([, p]) =>
      JSON.stringify(p.Roles).includes(taskRole),
    );
    const statements = policies.flatMap(
      ([, p]) => (p.PolicyDocument as { Statement: { Action: unknown; Resource: unknown }[] }).Statement,
    );
    const protection = statements.find((st) =>
      JSON.stringify(st.Action).includes('ecs:UpdateTaskProtection'),
    );
    expect(protection).toBeDefined();
    expect(JSON.stringify(protection!.Resource)).toMatch(/:task\/",\{"Ref":"WorkersCluster[^"]*"\},"\/\*"/);
    // A worker that fails at start (no CUDA, no bundle, no pool) is counted from its log and alarms in minutes.
    s.template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ $.message = "worker failed to start" }',
      MetricTransformations: [Match.objectLike({ MetricName: 'WorkerStartFailures', MetricValue: '1' })],
    });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'WorkerStartFailures',
      Threshold: 2,
      AlarmActions: [{ Ref: logicalId(s, s.stack.observability.topic) }],
    });
  });

  it('lets the API wake the worker service (desired count) and read its running count', () => {
    const api = s.json.Resources[logicalId(s, s.stack.functions.api)].Properties!;
    const vars = (api.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(vars.WORKER_CLUSTER).toEqual({ Ref: logicalId(s, s.stack.workers.cluster) });
    expect(vars.WORKER_SERVICE).toEqual({
      'Fn::GetAtt': [logicalId(s, s.stack.workers.service as never), 'Name'],
    });
    const apiRole = (api.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0];
    const statements = resourcesOfType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Roles).includes(apiRole))
      .flatMap(
        ([, p]) => (p.PolicyDocument as { Statement: { Action: unknown; Resource: unknown }[] }).Statement,
      );
    const wake = statements.find((st) => JSON.stringify(st.Action).includes('ecs:UpdateService'));
    expect(wake).toMatchObject({ Action: ['ecs:DescribeServices', 'ecs:UpdateService'] });
    expect(wake!.Resource).toEqual({ Ref: logicalId(s, s.stack.workers.service as never) });
  });

  it('launches GPU-optimised ECS AMIs with encrypted disks and IMDSv2, scaling from zero instances', () => {
    s.template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        ImageId: { Ref: Match.stringLikeRegexp('ecsoptimizedamiamazonlinux2023gpu') },
        MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 },
        BlockDeviceMappings: [
          {
            DeviceName: '/dev/xvda',
            Ebs: Match.objectLike({ Encrypted: true, VolumeSize: 100, VolumeType: 'gp3' }),
          },
        ],
      }),
    });
    // The SSM parameter behind the AMI is the GPU one.
    const params = Object.values(
      (s.json as { Parameters?: Record<string, { Default?: string }> }).Parameters ?? {},
    );
    expect(
      params.some(
        (p) => p.Default === '/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id',
      ),
    ).toBe(true);
    s.template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', {
      MinSize: '0',
      MaxSize: '4',
      MixedInstancesPolicy: Match.objectLike({
        LaunchTemplate: Match.objectLike({ Overrides: [{ InstanceType: 'g5.xlarge' }] }),
      }),
    });
    s.template.hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: Match.objectLike({
        ManagedScaling: { Status: 'ENABLED', TargetCapacity: 100 },
        ManagedTerminationProtection: 'ENABLED',
      }),
    });
    s.template.resourceCountIs('AWS::ECS::CapacityProvider', 1);
    // No NAT gateway: nothing bills by the hour while idle.
    s.template.resourceCountIs('AWS::EC2::NatGateway', 0);
  });

  it('scales on jobs backlog per task, down to zero tasks', () => {
    const jobsQueue = logicalId(s, s.stack.queues.jobs);
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: 4,
      ScalableDimension: 'ecs:service:DesiredCount',
      ServiceNamespace: 'ecs',
    });
    const queueDim = [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [jobsQueue, 'QueueName'] } }];
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 1,
        CustomizedMetricSpecification: {
          Metrics: Match.arrayWith([
            Match.objectLike({
              Id: 'visible',
              MetricStat: Match.objectLike({
                Metric: {
                  Namespace: 'AWS/SQS',
                  MetricName: 'ApproximateNumberOfMessagesVisible',
                  Dimensions: queueDim,
                },
              }),
            }),
            Match.objectLike({
              Id: 'inflight',
              MetricStat: Match.objectLike({
                Metric: {
                  Namespace: 'AWS/SQS',
                  MetricName: 'ApproximateNumberOfMessagesNotVisible',
                  Dimensions: queueDim,
                },
              }),
            }),
            Match.objectLike({
              Id: 'desired',
              MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'DesiredTaskCount' }) }),
            }),
            {
              Id: 'backlogPerTask',
              Expression: '(visible + inflight) / desired',
              Label: Match.anyValue(),
              ReturnData: true,
            },
          ]),
        },
      }),
    });
    // Waking from zero: a step policy adds a task when jobs wait and no worker holds one.
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'StepScaling',
      StepScalingPolicyConfiguration: Match.objectLike({
        AdjustmentType: 'ChangeInCapacity',
        StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }],
      }),
    });
    const sqsMetric = (id: string, name: string) =>
      Match.objectLike({
        Id: id,
        MetricStat: Match.objectLike({
          Metric: Match.objectLike({ MetricName: name, Dimensions: queueDim }),
        }),
      });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
      AlarmActions: [{ Ref: Match.stringLikeRegexp('WakeFromZero') }],
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'IF(visible >= 1 AND inflight == 0, visible, 0)' }),
        sqsMetric('visible', 'ApproximateNumberOfMessagesVisible'),
        sqsMetric('inflight', 'ApproximateNumberOfMessagesNotVisible'),
      ]),
    });
    s.template.hasResourceProperties('AWS::ECS::Service', {
      DesiredCount: 0,
      DeploymentConfiguration: Match.objectLike({ MinimumHealthyPercent: 0 }),
    });
  });
});

describe('observability', () => {
  it('alarms on both DLQs, the age of the oldest job, and error rates, and builds a dashboard', () => {
    const q = s.stack.queues;
    for (const dlq of [q.jobsDlq, q.webhooksDlq, q.completionDlq]) {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(s, dlq), 'QueueName'] } }],
        Threshold: 1,
        AlarmActions: [{ Ref: logicalId(s, s.stack.observability.topic) }],
      });
    }
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateAgeOfOldestMessage',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(s, q.jobs), 'QueueName'] } }],
      Threshold: 1800,
    });
    const rateAlarms = resourcesOfType('AWS::CloudWatch::Alarm').filter(([, p]) =>
      JSON.stringify(p.Metrics ?? []).includes('"MetricName":"Errors"'),
    );
    expect(rateAlarms.length).toBe(5); // one per function
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'IF(requests >= 10, errors / requests, 0)' }),
      ]),
    });
    s.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });
});

describe('cdk-nag', () => {
  it('reports no unacknowledged AwsSolutions finding', () => {
    // The pack demonstrably runs on this app (see variants.test.ts, where an injected
    // non-compliant bucket is reported); here nothing may be reported at all.
    expect(s.violations.filter((v) => v.plugin === 'AwsSolutions')).toEqual([]);
    // Nothing else may fail either (the sharp-layer note is a warning).
    expect(s.violations.filter((v) => v.severity === 'error')).toEqual([]);
    expect(s.synthError).toBeUndefined();
  });
});

describe('least privilege and customer keys (issue #11)', () => {
  type Statement = { Action: string | string[]; Resource: unknown; Effect: string };
  /** Every statement of the inline policies attached to a role. */
  function statementsOf(role: IConstruct): Statement[] {
    const id = logicalId(s, role as never);
    return resourcesOfType('AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.Roles ?? []).includes(`"${id}"`))
      .flatMap(([, p]) => (p.PolicyDocument as { Statement: Statement[] }).Statement);
  }
  const actions = (st: Statement) => ([] as string[]).concat(st.Action);
  const mentions = (st: Statement, c: IConstruct) =>
    JSON.stringify(st.Resource).includes(`"${logicalId(s, c as never)}"`);
  const WRITES = /^dynamodb:(PutItem|UpdateItem|DeleteItem|BatchWriteItem)$/;
  const writesTo = (role: IConstruct, table: IConstruct) =>
    statementsOf(role).some((st) => mentions(st, table) && actions(st).some((a) => WRITES.test(a)));
  const touches = (role: IConstruct, c: IConstruct) => statementsOf(role).some((st) => mentions(st, c));

  it('no function has a write grant it does not use', () => {
    const { storage, functions, workers } = s.stack;
    const roles = {
      api: functions.api.role!,
      complete: functions.complete.role!,
      webhooks: functions.webhooks.role!,
      dlq: functions.dlq.role!,
      worker: workers.taskDefinition.taskRole,
    };
    // The API reads keys and usage; it writes only the jobs table.
    expect(touches(roles.api, storage.keys)).toBe(true);
    expect(writesTo(roles.api, storage.keys)).toBe(false);
    expect(writesTo(roles.api, storage.usage)).toBe(false);
    expect(writesTo(roles.api, storage.jobs)).toBe(true);
    // Billing is the completion function's alone.
    expect(writesTo(roles.complete, storage.usage)).toBe(true);
    for (const r of [roles.worker, roles.dlq, roles.webhooks]) expect(touches(r, storage.usage)).toBe(false);
    // Nobody but the CLI (operator credentials) writes keys.
    for (const r of Object.values(roles)) expect(writesTo(r, storage.keys)).toBe(false);
  });

  it('photo buckets use the customer key with S3 Bucket Keys; only the webhooks function may decrypt secrets', () => {
    const { storage, functions, workers } = s.stack;
    for (const bucket of [storage.uploads, storage.results, storage.models!]) {
      const props = s.json.Resources[logicalId(s, bucket)]!.Properties as {
        BucketEncryption: { ServerSideEncryptionConfiguration: unknown[] };
      };
      expect(props.BucketEncryption.ServerSideEncryptionConfiguration).toEqual([
        {
          BucketKeyEnabled: true,
          ServerSideEncryptionByDefault: {
            SSEAlgorithm: 'aws:kms',
            KMSMasterKeyID: { 'Fn::GetAtt': [logicalId(s, storage.dataKey), 'Arn'] },
          },
        },
      ]);
    }
    s.template.allResourcesProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    const decrypts = (role: IConstruct) =>
      statementsOf(role).some(
        (st) => mentions(st, storage.secretsKey) && actions(st).includes('kms:Decrypt'),
      );
    expect(decrypts(functions.webhooks.role!)).toBe(true);
    for (const r of [
      functions.api.role!,
      functions.complete.role!,
      functions.dlq.role!,
      workers.taskDefinition.taskRole,
    ])
      expect(touches(r, storage.secretsKey)).toBe(false);
    // The webhooks function is told which key; the key's own policy grants no other principal of the stack.
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SECRETS_KEY_ID: { 'Fn::GetAtt': [logicalId(s, storage.secretsKey), 'Arn'] },
        }),
      },
    });
  });
});
