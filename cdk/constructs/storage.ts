import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface StorageProps {
  readonly retentionDays: number;
  readonly retainData: boolean;
  /** Days an input image may wait for a worker; matches the jobs queue message retention. */
  readonly inputRetentionDays: number;
  /** Create the models bucket (false when the operator points bundleUri at a bucket of their own). */
  readonly createModelsBucket: boolean;
}

/** Buckets and tables: everything that holds state. */
export class Storage extends Construct {
  readonly uploads: s3.Bucket;
  readonly results: s3.Bucket;
  readonly models?: s3.Bucket;
  readonly accessLogs: s3.Bucket;
  readonly jobs: dynamodb.Table;
  readonly keys: dynamodb.Table;
  readonly usage: dynamodb.Table;
  /** Customer key of the photo buckets (uploads, results, models). */
  readonly dataKey: kms.Key;
  /** Customer key of the webhook secrets' envelope encryption; only the webhooks function may decrypt. */
  readonly secretsKey: kms.Key;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    const removalPolicy = props.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    // Customer keys (rotated yearly): buyers of a biometric-data service expect SSE-KMS with a key they can
    // audit and revoke. S3 Bucket Keys make S3 ask KMS for a bucket-level key instead of once per object, which
    // removes the per-request KMS cost that used to argue for SSE-S3.
    this.dataKey = new kms.Key(this, 'DataKey', {
      description: 'FALCO photo buckets (uploads, results, models)',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.secretsKey = new kms.Key(this, 'SecretsKey', {
      description: 'FALCO webhook signing secrets (envelope encryption)',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Shared secure defaults: no public access whatsoever, TLS-only bucket policy, SSE-KMS with the customer key.
    const base = {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy,
    } satisfies s3.BucketProps;
    const secure = {
      ...base,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.dataKey,
      bucketKeyEnabled: true,
    } satisfies s3.BucketProps;

    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      ...base,
      // S3 server access logs can only be delivered to an SSE-S3 bucket; they hold no photo data.
      encryption: s3.BucketEncryption.S3_MANAGED,
      // Access-log delivery needs ACL-less bucket-owner-enforced + a bucket policy (CDK adds it).
      lifecycleRules: [{ id: 'expire-logs', expiration: Duration.days(90) }],
    });

    this.uploads = new s3.Bucket(this, 'Uploads', {
      ...secure,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'uploads/',
      // Browsers upload directly with presigned POST/PUT from the API's documentation page or clients.
      cors: [
        {
          allowedMethods: [s3.HttpMethods.PUT, s3.HttpMethods.POST],
          allowedOrigins: ['*'],
          allowedHeaders: ['*'],
          maxAge: 3000,
        },
      ],
      lifecycleRules: [
        // Raw uploads only live until a job copies them to inputs/: a day is plenty.
        { id: 'expire-uploads', prefix: 'uploads/', expiration: Duration.days(1) },
        // Inputs must outlive the longest time a job message may wait in the queue.
        { id: 'expire-inputs', prefix: 'inputs/', expiration: Duration.days(props.inputRetentionDays) },
        { id: 'abort-multipart', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });

    this.results = new s3.Bucket(this, 'Results', {
      ...secure,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'results/',
      lifecycleRules: [
        { id: 'expire-results', prefix: 'results/', expiration: Duration.days(props.retentionDays) },
        { id: 'expire-reports', prefix: 'reports/', expiration: Duration.days(props.retentionDays) },
        { id: 'abort-multipart', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });

    if (props.createModelsBucket) {
      this.models = new s3.Bucket(this, 'Models', {
        ...secure,
        serverAccessLogsBucket: this.accessLogs,
        serverAccessLogsPrefix: 'models/',
        // Versioning lets an operator roll a bad bundle back; old versions are dropped after a month.
        versioned: true,
        // A model bundle is expensive to rebuild: keep it even when a dev stack is deleted.
        removalPolicy: RemovalPolicy.RETAIN,
        lifecycleRules: [{ id: 'expire-old-versions', noncurrentVersionExpiration: Duration.days(30) }],
      });
    }

    const table = (tid: string): dynamodb.Table =>
      new dynamodb.Table(this, tid, {
        partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
        // On-demand: no charge while idle, no capacity planning for bursty job traffic.
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        timeToLiveAttribute: 'ttl',
        encryption: dynamodb.TableEncryption.AWS_MANAGED,
        removalPolicy,
      });
    this.jobs = table('Jobs');
    this.jobs.addGlobalSecondaryIndex({
      indexName: 'gsi1',
      partitionKey: { name: 'gsi1pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'gsi1sk', type: dynamodb.AttributeType.STRING },
    });
    // Sparse: the webhook outbox (OUTBOX) and images in flight (PROCESSING), for the sweeper. Keys only, so
    // the worker's progress writes never touch the index.
    this.jobs.addGlobalSecondaryIndex({
      indexName: 'gsi2',
      partitionKey: { name: 'gsi2pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'gsi2sk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });
    this.keys = table('Keys');
    this.usage = table('Usage');
  }
}
