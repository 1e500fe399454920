import { Duration } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import type { Queues } from './queues.js';
import type { Workers } from './workers.js';

export interface ObservabilityProps {
  readonly stage: string;
  readonly queues: Queues;
  readonly functions: Record<string, lambda.IFunction>;
  readonly httpApi: apigw.HttpApi;
  readonly workers: Workers;
  readonly alarmEmail?: string;
  /** Age of the oldest waiting job beyond which someone should look (scale-up is stuck). */
  readonly maxJobWait: Duration;
}

/** Error ratio above which a function alarms (over 5 minutes, at least a few invocations). */
export const ERROR_RATE_THRESHOLD = 0.05;

export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { queues } = props;

    this.topic = new sns.Topic(this, 'AlarmTopic', {
      displayName: `falco ${props.stage} alarms`,
      enforceSSL: true,
    });
    if (props.alarmEmail) this.topic.addSubscription(new subs.EmailSubscription(props.alarmEmail));
    const action = new actions.SnsAction(this.topic);
    const add = (alarm: cloudwatch.Alarm): cloudwatch.Alarm => {
      alarm.addAlarmAction(action);
      alarm.addOkAction(action);
      this.alarms.push(alarm);
      return alarm;
    };
    const five = Duration.minutes(5);

    // Anything in a DLQ is a job or webhook that exhausted its retries: always worth a look.
    for (const [name, dlq] of [
      ['JobsDlq', queues.jobsDlq],
      ['WebhooksDlq', queues.webhooksDlq],
      ['CompletionDlq', queues.completionDlq],
    ] as const) {
      add(
        dlq
          .metricApproximateNumberOfMessagesVisible({ period: five, statistic: 'Maximum' })
          .createAlarm(this, `${name}Depth`, {
            alarmDescription: `${name}: messages exhausted their retries`,
            threshold: 1,
            evaluationPeriods: 1,
            comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
          }),
      );
    }
    add(
      queues.jobs
        .metricApproximateAgeOfOldestMessage({ period: five, statistic: 'Maximum' })
        .createAlarm(this, 'JobsOldestMessage', {
          alarmDescription: 'Jobs wait too long: workers are not scaling or not consuming',
          threshold: props.maxJobWait.toSeconds(),
          evaluationPeriods: 2,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
    );
    add(
      props.workers.startFailures.createAlarm(this, 'WorkerStartFailures', {
        alarmDescription:
          'GPU workers fail at start (crash loop): see the worker log group for "worker failed to start" ' +
          '(CUDA provider, model bundle, fake pool)',
        threshold: 2,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
    add(
      queues.webhooks
        .metricApproximateAgeOfOldestMessage({ period: five, statistic: 'Maximum' })
        .createAlarm(this, 'WebhooksOldestMessage', {
          // Delayed re-enqueues are fresh messages, so an old one means the dispatcher is stuck.
          alarmDescription: 'Webhook dispatch is stuck',
          threshold: Duration.minutes(30).toSeconds(),
          evaluationPeriods: 2,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
    );

    const errorRates: cloudwatch.IMetric[] = [];
    for (const [name, fn] of Object.entries(props.functions)) {
      const rate = new cloudwatch.MathExpression({
        // Rate, not count: a busy day must not alarm on the same small fraction of errors.
        // Metric ids must be unique within a graph, and all rates share one dashboard widget.
        expression: `IF(inv_${name} >= 5, err_${name} / inv_${name}, 0)`,
        usingMetrics: {
          [`err_${name}`]: fn.metricErrors({ period: five, statistic: 'Sum' }),
          [`inv_${name}`]: fn.metricInvocations({ period: five, statistic: 'Sum' }),
        },
        label: `${name} error rate`,
        period: five,
      });
      errorRates.push(rate);
      add(
        rate.createAlarm(this, `${name}ErrorRate`, {
          alarmDescription: `${name} Lambda error rate above ${ERROR_RATE_THRESHOLD * 100}%`,
          threshold: ERROR_RATE_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }
    const api5xx = new cloudwatch.MathExpression({
      expression: 'IF(requests >= 10, errors / requests, 0)',
      usingMetrics: {
        errors: props.httpApi.metricServerError({ period: five, statistic: 'Sum' }),
        requests: props.httpApi.metricCount({ period: five, statistic: 'Sum' }),
      },
      label: 'API 5xx rate',
      period: five,
    });
    add(
      api5xx.createAlarm(this, 'Api5xxRate', {
        alarmDescription: `API 5xx rate above ${ERROR_RATE_THRESHOLD * 100}%`,
        threshold: ERROR_RATE_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );

    const w = props.workers;
    // A worker task that stops with a non-zero exit code crashed (OOM, engine abort): a scale-in or deploy stops
    // tasks with SIGTERM and they exit 0 after handing their image back.
    new events.Rule(this, 'WorkerCrashes', {
      description: 'worker task exited with a non-zero code',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: {
          clusterArn: [w.cluster.clusterArn],
          lastStatus: ['STOPPED'],
          containers: { exitCode: [{ 'anything-but': 0 }] },
        },
      },
      targets: [new eventsTargets.SnsTopic(this.topic)],
    });
    const ciMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: 'ECS/ContainerInsights',
        metricName,
        dimensionsMap: { ClusterName: w.cluster.clusterName, ServiceName: w.service.serviceName },
        statistic: 'Average',
        period: Duration.minutes(1),
      });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `falco-${props.stage}`,
      defaultInterval: Duration.hours(6),
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Jobs queue',
        left: [
          queues.jobs.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1) }),
          queues.jobs.metricApproximateNumberOfMessagesNotVisible({ period: Duration.minutes(1) }),
        ],
        right: [queues.jobs.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1) })],
      }),
      new cloudwatch.GraphWidget({
        title: 'Worker tasks',
        left: [ciMetric('DesiredTaskCount'), ciMetric('RunningTaskCount'), ciMetric('PendingTaskCount')],
      }),
      new cloudwatch.GraphWidget({
        title: 'Dead-letter queues',
        left: [
          queues.jobsDlq.metricApproximateNumberOfMessagesVisible({ period: five }),
          queues.webhooksDlq.metricApproximateNumberOfMessagesVisible({ period: five }),
        ],
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'API requests / latency',
        left: [
          props.httpApi.metricCount({ period: five }),
          props.httpApi.metricServerError({ period: five }),
          props.httpApi.metricClientError({ period: five }),
        ],
        right: [props.httpApi.metricLatency({ period: five, statistic: 'p95' })],
      }),
      new cloudwatch.GraphWidget({ title: 'Lambda error rates', left: errorRates }),
      new cloudwatch.GraphWidget({
        title: 'Webhooks queue',
        left: [queues.webhooks.metricApproximateNumberOfMessagesVisible({ period: five })],
        right: [queues.webhooks.metricApproximateAgeOfOldestMessage({ period: five })],
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24 }),
    );
  }
}
