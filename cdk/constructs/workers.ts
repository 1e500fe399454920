import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { Queues } from './queues.js';
import type { Storage } from './storage.js';
import { DEFAULT_STATUS_FILE, healthCheckCommand } from '../../functions/worker/health.js';

export interface WorkersProps {
  readonly repoRoot: string;
  readonly storage: Storage;
  readonly queues: Queues;
  readonly environment: Record<string, string>;
  readonly instanceTypes: readonly string[];
  readonly minTasks: number;
  readonly maxTasks: number;
  readonly backlogPerTask: number;
  readonly spot: boolean;
  readonly bundle: { bucket: s3.IBucket; prefix: string };
  readonly memoryReservationMiB: number;
  readonly volumeGiB: number;
  /** Replaces the Docker build of functions/worker/Dockerfile (tests only). */
  readonly image?: ecs.ContainerImage;
}

/**
 * The worker image's base images pinned by digest (functions/worker/base-images.json, written by
 * `npm run image -- --pin`), as Docker build arguments; none (the Dockerfile's tags) before the first pin.
 */
export function pinnedBaseImages(repoRoot: string): Record<string, string> {
  const file = path.join(repoRoot, 'functions', 'worker', 'base-images.json');
  if (!existsSync(file)) return {};
  const pins = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { tag: string; digest: string }>;
  return Object.fromEntries(Object.entries(pins).map(([arg, p]) => [arg, `${p.tag}@${p.digest}`]));
}

/** Files never sent to `docker build` (mirrors .dockerignore; the asset hash ignores them too). */
export const WORKER_IMAGE_EXCLUDES = [
  '.git',
  'node_modules',
  'cdk.out',
  '**/dist',
  '**/.bundle',
  '.bundles',
  'var',
  '**/*.onnx',
  '**/*.onnx.data',
  'layers',
  'test',
  'cdk',
  'tmp',
  '.ci',
  '.env',
];

/**
 * GPU workers: ECS on EC2 GPU instances that exist only while there is work.
 *
 * Cost when idle is the design driver: the service scales to zero tasks, the capacity provider's
 * managed scaling then takes the Auto Scaling group to zero instances, and the VPC has no NAT
 * gateway (instances sit in public subnets with no inbound rules; S3 and DynamoDB traffic goes
 * through free gateway endpoints). Interface endpoints or NAT would cost money around the clock.
 */
export class Workers extends Construct {
  readonly vpc: ec2.Vpc;
  readonly cluster: ecs.Cluster;
  readonly taskDefinition: ecs.Ec2TaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly service: ecs.Ec2Service;
  readonly onDemandProvider: ecs.AsgCapacityProvider;
  readonly spotProvider?: ecs.AsgCapacityProvider;
  readonly scalableTarget: appscaling.ScalableTarget;
  readonly backlogPerTaskPolicy: appscaling.CfnScalingPolicy;
  readonly logGroup: logs.LogGroup;
  /** Count of worker start-up failures ("worker failed to start" in the worker log): a crash loop. */
  readonly startFailures: cloudwatch.Metric;
  /** EC2 instance roles of the GPU hosts (one per Auto Scaling group). */
  readonly instanceRoles: iam.Role[] = [];

  constructor(scope: Construct, id: string, props: WorkersProps) {
    super(scope, id);

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
      gatewayEndpoints: {
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
        DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
      },
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogs', { retention: logs.RetentionDays.TWO_WEEKS }),
      ),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED, // also publishes DesiredTaskCount, used for scaling
    });

    const securityGroup = new ec2.SecurityGroup(this, 'InstanceSg', {
      vpc: this.vpc,
      description: 'GPU workers: no inbound traffic, outbound to AWS APIs',
      allowAllOutbound: true,
    });

    const makeAsg = (name: string, types: readonly string[], spot: boolean): autoscaling.AutoScalingGroup => {
      const role = new iam.Role(this, `${name}InstanceRole`, {
        assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
        description: 'ECS container instance (GPU worker host)',
      });
      this.instanceRoles.push(role);
      const launchTemplate = new ec2.LaunchTemplate(this, `${name}LaunchTemplate`, {
        machineImage: ecs.EcsOptimizedImage.amazonLinux2023(ecs.AmiHardwareType.GPU),
        userData: ec2.UserData.forLinux(), // the capacity provider appends the ECS agent config
        role,
        securityGroup,
        associatePublicIpAddress: true, // no NAT: the public IP is the way out
        // IMDSv2 with hop limit 1: containers (bridge network) cannot reach the host's credentials.
        requireImdsv2: true,
        httpPutResponseHopLimit: 1,
        blockDevices: [
          {
            deviceName: '/dev/xvda',
            volume: ec2.BlockDeviceVolume.ebs(props.volumeGiB, {
              encrypted: true,
              volumeType: ec2.EbsDeviceVolumeType.GP3,
              deleteOnTermination: true,
            }),
          },
        ],
      });
      if (spot) {
        // Spot interruption notice -> the agent drains the instance so ECS stops the task (SIGTERM,
        // message handed back) within the two-minute warning. The ECS construct only adds this for
        // spotPrice-style ASGs, not mixed-instances ones, hence by hand.
        launchTemplate.userData!.addCommands(
          'echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config',
        );
      }
      return new autoscaling.AutoScalingGroup(this, `${name}Asg`, {
        vpc: this.vpc,
        vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
        minCapacity: 0,
        maxCapacity: props.maxTasks,
        mixedInstancesPolicy: {
          launchTemplate,
          launchTemplateOverrides: types.map((t) => ({ instanceType: new ec2.InstanceType(t) })),
          instancesDistribution: spot
            ? {
                onDemandBaseCapacity: 0,
                onDemandPercentageAboveBaseCapacity: 0,
                spotAllocationStrategy: autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED,
              }
            : { onDemandBaseCapacity: 0, onDemandPercentageAboveBaseCapacity: 100 },
        },
      });
    };

    this.onDemandProvider = new ecs.AsgCapacityProvider(this, 'OnDemandCapacity', {
      autoScalingGroup: makeAsg('OnDemand', props.instanceTypes.slice(0, 1), false),
      enableManagedScaling: true,
      // 100%: no idle spare instance; a new task waits for an instance instead (GPU hours are dear).
      targetCapacityPercent: 100,
      enableManagedTerminationProtection: true,
    });
    this.cluster.addAsgCapacityProvider(this.onDemandProvider);
    if (props.spot) {
      this.spotProvider = new ecs.AsgCapacityProvider(this, 'SpotCapacity', {
        // Diversify across every configured type: Spot GPU capacity is often short in one pool.
        autoScalingGroup: makeAsg('Spot', props.instanceTypes, true),
        enableManagedScaling: true,
        targetCapacityPercent: 100,
        enableManagedTerminationProtection: true,
      });
      this.cluster.addAsgCapacityProvider(this.spotProvider);
    }

    this.logGroup = new logs.LogGroup(this, 'WorkerLogs', { retention: logs.RetentionDays.ONE_MONTH });
    // Bridge networking: awsvpc on EC2 cannot assign public IPs, and without NAT the task must use
    // the host's public address. The worker accepts no connections, so no port mappings.
    this.taskDefinition = new ecs.Ec2TaskDefinition(this, 'TaskDef', { networkMode: ecs.NetworkMode.BRIDGE });
    const image =
      props.image ??
      ecs.ContainerImage.fromAsset(props.repoRoot, {
        file: 'functions/worker/Dockerfile',
        buildArgs: pinnedBaseImages(props.repoRoot),
        platform: Platform.LINUX_AMD64,
        exclude: WORKER_IMAGE_EXCLUDES,
      });
    const bundleUri = `s3://${props.bundle.bucket.bucketName}/${props.bundle.prefix}`;
    this.container = this.taskDefinition.addContainer('worker', {
      image,
      gpuCount: 1,
      memoryReservationMiB: props.memoryReservationMiB,
      essential: true,
      // Time for the worker to hand its message back (visibility 0) and stop after SIGTERM.
      stopTimeout: Duration.seconds(120),
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'worker' }),
      // Liveness without HTTP or curl (functions/worker/health.ts): node checks the heartbeat in the status file,
      // which the worker refreshes while it loads, while idle and on every optimisation step; a hung engine goes
      // stale and ECS replaces the task. The heartbeat exists from the process start, so a short grace suffices.
      healthCheck: {
        command: healthCheckCommand(DEFAULT_STATUS_FILE),
        interval: Duration.seconds(30),
        timeout: Duration.seconds(10),
        retries: 3,
        startPeriod: Duration.seconds(60),
      },
      environment: {
        ...props.environment,
        BUNDLE_URI: bundleUri,
        // The EC2 launch type does not inject the region; the SDK needs it.
        AWS_REGION: Stack.of(this).region,
        // Read by functions/worker/main.ts: finish or hand back the current message within stopTimeout.
        SHUTDOWN_GRACE_MS: '100000',
        // The GPU or nothing: a task whose CUDA provider cannot load stops at start (and the start-failure alarm
        // fires) instead of running the optimisation on the host's 4 vCPUs, ~100x slower (models/engine/runtime.ts).
        FALCO_PROVIDER: 'cuda',
        // The file the health check reads (the same default, stated so both ends visibly agree).
        WORKER_STATUS_FILE: DEFAULT_STATUS_FILE,
      },
    });

    const role = this.taskDefinition.taskRole;
    props.queues.jobs.grantConsumeMessages(role); // includes ChangeMessageVisibility (heartbeats)
    props.storage.uploads.grantRead(role, 'inputs/*');
    props.storage.uploads.grantDelete(role, 'inputs/*'); // inputs of erased jobs
    props.storage.results.grantPut(role);
    props.storage.results.grantRead(role);
    props.storage.jobs.grantReadWriteData(role);
    // No usage grant: billing is the completion function's (least privilege).
    props.queues.webhooks.grantSendMessages(role);
    props.bundle.bucket.grantRead(
      role,
      props.bundle.prefix === '' ? '*' : `${props.bundle.prefix.replace(/\/?$/, '/')}*`,
    );

    // Task scale-in protection while an image is being processed (the worker sets and clears it through the ECS
    // agent's task-protection endpoint, which acts with the task role): a scale-in then never stops a task
    // mid-image. Scoped to this cluster's tasks (the action supports no narrower resource).
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
        resources: [
          Stack.of(this).formatArn({
            service: 'ecs',
            resource: 'task',
            resourceName: `${this.cluster.clusterName}/*`,
          }),
        ],
      }),
    );

    // A worker that cannot start (no GPU/CUDA provider, no or bad bundle, no fake pool) exits and ECS restarts it
    // every minute or so; main.ts logs one CRITICAL "worker failed to start" line each time. Counting those is
    // free (a metric filter on the existing log group) and fires within minutes, long before the oldest-job alarm.
    this.startFailures = this.logGroup
      .addMetricFilter('StartFailures', {
        filterPattern: logs.FilterPattern.stringValue('$.message', '=', 'worker failed to start'),
        metricNamespace: `Falco/${Stack.of(this).stackName}`,
        metricName: 'WorkerStartFailures',
        metricValue: '1',
        defaultValue: 0,
      })
      .metric({ statistic: 'Sum', period: Duration.minutes(5) });

    const provider = this.spotProvider ?? this.onDemandProvider;
    this.service = new ecs.Ec2Service(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: props.minTasks,
      // A queue consumer tolerates a gap; allowing 0% avoids needing a spare GPU to roll a deploy.
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      circuitBreaker: { rollback: true },
      capacityProviderStrategies: [{ capacityProvider: provider.capacityProviderName, weight: 1 }],
    });

    // ---- scaling on the jobs backlog per task, down to zero
    this.scalableTarget = new appscaling.ScalableTarget(this, 'TaskCount', {
      serviceNamespace: appscaling.ServiceNamespace.ECS,
      resourceId: `service/${this.cluster.clusterName}/${this.service.serviceName}`,
      scalableDimension: 'ecs:service:DesiredCount',
      // ECS scaling always uses its service-linked role (created on first registration); naming it
      // avoids a separate, unused IAM role (the same choice Ec2Service.autoScaleTaskCount makes).
      role: iam.Role.fromRoleArn(
        this,
        'ScalingRole',
        Stack.of(this).formatArn({
          service: 'iam',
          region: '',
          resource: 'role/aws-service-role/ecs.application-autoscaling.amazonaws.com',
          resourceName: 'AWSServiceRoleForApplicationAutoScaling_ECSService',
        }),
      ),
      minCapacity: props.minTasks,
      maxCapacity: props.maxTasks,
    });
    const queueName = props.queues.jobs.queueName;
    const sqsStat = (metricName: string) => ({
      metric: { namespace: 'AWS/SQS', metricName, dimensions: [{ name: 'QueueName', value: queueName }] },
      stat: 'Average',
    });
    const serviceDims = [
      { name: 'ClusterName', value: this.cluster.clusterName },
      { name: 'ServiceName', value: this.service.serviceName },
    ];
    // Target tracking on (visible + in flight) / desired tasks. Dividing by the *desired* count
    // (not the running count) keeps the policy's arithmetic exact: new desired = desired x metric /
    // target = backlog / target, even while new tasks still wait for a GPU instance to boot.
    // The L2 construct cannot express metric math for target tracking, hence the L1 policy.
    this.backlogPerTaskPolicy = new appscaling.CfnScalingPolicy(this, 'BacklogPerTask', {
      policyName: `${Stack.of(this).stackName}-backlog-per-task`,
      policyType: 'TargetTrackingScaling',
      scalingTargetId: this.scalableTarget.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: props.backlogPerTask,
        scaleOutCooldown: 60,
        // Scale-in stops a task; leave a few minutes for the next job before giving the GPU back.
        scaleInCooldown: 300,
        customizedMetricSpecification: {
          metrics: [
            { id: 'visible', metricStat: sqsStat('ApproximateNumberOfMessagesVisible'), returnData: false },
            {
              id: 'inflight',
              metricStat: sqsStat('ApproximateNumberOfMessagesNotVisible'),
              returnData: false,
            },
            {
              id: 'desired',
              metricStat: {
                metric: {
                  namespace: 'ECS/ContainerInsights',
                  metricName: 'DesiredTaskCount',
                  dimensions: serviceDims,
                },
                stat: 'Average',
              },
              returnData: false,
            },
            {
              id: 'backlogPerTask',
              expression: '(visible + inflight) / desired',
              label: 'Jobs backlog per task',
              returnData: true,
            },
          ],
        },
      },
    });

    // Target tracking multiplies the current count, so it can never leave zero: a step policy adds
    // a task when jobs wait and no worker holds one (nothing in flight) — true at zero tasks, and
    // while the first GPU instance boots. Only SQS metrics, which exist whenever the queue is in use
    // (Container Insights publishes nothing for a service with no tasks). ChangeInCapacity (+1, not
    // "exactly 1") so a re-trigger can only add a task, never cut a fleet target tracking grew; the
    // cooldown roughly covers an instance boot, bounding the extra tasks while the first one starts.
    const sqsMetric = (metric: cloudwatch.Metric) =>
      metric.with({ statistic: 'Maximum', period: Duration.minutes(1) });
    const wakeMetric = new cloudwatch.MathExpression({
      expression: 'IF(visible >= 1 AND inflight == 0, visible, 0)',
      usingMetrics: {
        visible: sqsMetric(props.queues.jobs.metricApproximateNumberOfMessagesVisible()),
        inflight: sqsMetric(props.queues.jobs.metricApproximateNumberOfMessagesNotVisible()),
      },
      label: 'Jobs waiting while no worker is busy',
      period: Duration.minutes(1),
    });
    this.scalableTarget.scaleOnMetric('WakeFromZero', {
      metric: wakeMetric,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      scalingSteps: [
        { upper: 0, change: 0 },
        { lower: 1, change: 1 },
      ],
      cooldown: Duration.minutes(10),
      evaluationPeriods: 1,
    });
  }
}
