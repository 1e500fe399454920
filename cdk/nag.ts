import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import type { ServiceStack } from './stacks/service-stack.js';

/**
 * Every cdk-nag (AwsSolutions) acknowledgement of the stack, each with the reason it is acceptable.
 * Kept in one place so a reviewer sees all exceptions at once. Acknowledgements are scoped to the
 * construct that triggers them, never the whole stack, so a new resource gets checked afresh.
 */
export function addNagSuppressions(stack: ServiceStack): void {
  const ack = (scope: IConstruct, id: string, reason: string) =>
    Validations.of(scope).acknowledge({ id, reason });
  const fns = stack.functions;

  // ---- Lambda functions
  for (const fn of fns.all) {
    ack(
      fn,
      'AwsSolutions-L1',
      'Runtime pinned to nodejs22.x on purpose (project requirement; the code is built and tested for Node 22). ' +
        'Moving to a newer runtime is a deliberate, tested change, not an automatic one.',
    );
    ack(
      fn,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'AWSLambdaBasicExecutionRole only allows writing CloudWatch logs, which every function needs.',
    );
    ack(
      fn,
      'AwsSolutions-IAM5[Resource::*]',
      'X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords do not support resource-level permissions.',
    );
    ack(
      fn,
      'AwsSolutions-IAM5[Resource::<StorageJobs4C7573CB.Arn>/index/*]',
      "Queries on the jobs table GSI (gsi1, tenant job listing); the wildcard is limited to this table's indexes.",
    );
  }
  const bucketGrant =
    "CDK grant helpers: object-level S3 actions (Get/Put/Delete/Abort/List variants) limited to this stack's own buckets.";
  for (const fn of [fns.api, fns.complete, fns.sweeper]) {
    for (const a of ['s3:GetBucket*', 's3:GetObject*', 's3:List*'])
      ack(fn, `AwsSolutions-IAM5[Action::${a}]`, bucketGrant);
    ack(
      fn,
      'AwsSolutions-IAM5[Resource::<StorageResultsB2A4FB2E.Arn>/*]',
      'Reads results and reports of any tenant (keys are per tenant/job, created at run time).',
    );
  }
  for (const a of ['s3:Abort*', 's3:DeleteObject*'])
    ack(fns.api, `AwsSolutions-IAM5[Action::${a}]`, bucketGrant);
  // Completion and DLQ handlers delete originals (inputs/ only) once an image is terminal; completion also
  // discards results of erased jobs.
  for (const fn of [fns.complete, fns.dlq, fns.sweeper]) {
    ack(fn, 'AwsSolutions-IAM5[Action::s3:DeleteObject*]', bucketGrant);
    ack(
      fn,
      'AwsSolutions-IAM5[Resource::<StorageUploadsBDC5E374.Arn>/inputs/*]',
      'Deletes job originals (inputs/ prefix only) of any tenant once processed: privacy requirement.',
    );
  }
  ack(
    fns.api,
    'AwsSolutions-IAM5[Resource::<StorageUploadsBDC5E374.Arn>/*]',
    'Presigns uploads and copies uploads/ to inputs/ for any tenant; keys are created at run time.',
  );

  ack(
    fns.apiRoute,
    'AwsSolutions-APIG4',
    'Authorization is done by the application: every /v1 route checks the API key (hashed, in the keys table) ' +
      'and a per-key rate limit; the docs and health routes are public by design. An API Gateway authorizer would ' +
      'duplicate that lookup and add latency and cost per request.',
  );

  // The S3 notifications custom resource is a CDK singleton at stack level.
  const notif = stack.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
  if (notif) {
    ack(
      notif,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'CDK-managed custom resource that configures bucket notifications at deploy time; log writes only.',
    );
    ack(
      notif,
      'AwsSolutions-IAM5[Resource::*]',
      'CDK-managed: s3:PutBucketNotification is granted on * by the construct library.',
    );
  }

  // ---- Customer key of the photo buckets (SSE-KMS): roles that write objects get the grant helpers' KMS actions.
  const kmsGrant =
    "CDK bucket grants on an SSE-KMS bucket: kms:GenerateDataKey*/ReEncrypt* limited to the stack's own data key (needed to write encrypted objects).";
  for (const scope of [fns.api, stack.workers.taskDefinition.taskRole])
    for (const a of ['kms:GenerateDataKey*', 'kms:ReEncrypt*'])
      ack(scope, `AwsSolutions-IAM5[Action::${a}]`, kmsGrant);

  // ---- GPU workers
  const w = stack.workers;
  const taskRole = w.taskDefinition.taskRole;
  for (const a of ['s3:Abort*', 's3:GetBucket*', 's3:GetObject*', 's3:List*', 's3:DeleteObject*'])
    ack(taskRole, `AwsSolutions-IAM5[Action::${a}]`, bucketGrant);
  ack(
    taskRole,
    'AwsSolutions-IAM5[Resource::<StorageResultsB2A4FB2E.Arn>/*]',
    'Writes reports/ and results/ of any tenant and job.',
  );
  ack(
    taskRole,
    'AwsSolutions-IAM5[Resource::<StorageUploadsBDC5E374.Arn>/inputs/*]',
    'Reads job inputs and deletes those of erased jobs (inputs/ prefix only).',
  );
  ack(taskRole, 'AwsSolutions-IAM5[Resource::<StorageJobs4C7573CB.Arn>/index/*]', 'Jobs table GSI queries.');
  ack(
    taskRole,
    `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<${stack.getLogicalId(
      w.cluster.node.defaultChild as CfnElement,
    )}>/*]`,
    "Task scale-in protection (ecs:UpdateTaskProtection) on this cluster's tasks: task ids exist only at run time.",
  );
  for (const id of modelBucketFindings(stack)) ack(taskRole, id, 'Reads the model bundle (its prefix only).');
  if (w.taskDefinition.executionRole) {
    ack(
      w.taskDefinition.executionRole,
      'AwsSolutions-IAM5[Resource::*]',
      'ecr:GetAuthorizationToken has no resource-level permissions (image pulls are scoped to the asset repository).',
    );
  }
  ack(
    w.taskDefinition,
    'AwsSolutions-ECS2',
    'The environment holds resource names and log level only (the service contract); no secrets. Webhook secrets live in the keys table.',
  );
  for (const role of w.instanceRoles) {
    ack(
      role,
      'AwsSolutions-IAM5[Resource::*]',
      'ECS container-instance permissions added by the ECS construct library (ecs:DiscoverPollEndpoint etc. have no resource-level permissions).',
    );
    ack(
      role,
      'AwsSolutions-IAM5[Action::ecs:Submit*]',
      'ECS agent state reports, scoped to this cluster by the ECS construct library.',
    );
  }
  for (const p of [w.onDemandProvider, w.spotProvider]) {
    if (!p) continue;
    const asg = p.autoScalingGroup;
    ack(
      asg,
      'AwsSolutions-AS3',
      'Scaling is driven by the ECS capacity provider; scale activity is visible in ECS service events and the ASG activity ' +
        'history, and a stuck scale-out surfaces in the jobs-queue age alarm. Per-instance notifications would only add noise.',
    );
    ack(
      asg,
      'AwsSolutions-EC26',
      'The launch template encrypts the root EBS volume (asserted in test/cdk); the rule crashes on mixed-instances ASGs ' +
        '(it looks for a launch template name where the mixed instances policy holds it).',
    );
  }
}

/** IAM5 finding ids for the bundle bucket grant (its token differs for an external bucket). */
function modelBucketFindings(stack: ServiceStack): string[] {
  const models = stack.storage.models;
  if (models) {
    const logicalId = Stack.of(stack).getLogicalId(models.node.defaultChild as never);
    return [`AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/bundles/current/*]`];
  }
  // External bucket: a literal ARN from the bundleUri.
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(stack.bundleUri);
  if (!m) return [];
  const prefix = m[2] === '' ? '*' : `${m[2].replace(/\/?$/, '/')}*`;
  return [`AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${m[1]}/${prefix}]`];
}
