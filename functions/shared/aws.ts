/**
 * AWS SDK v3 clients. Production and local mode build them the same way: endpoints come from the SDK's
 * own AWS_ENDPOINT_URL_<SERVICE> variables, so the emulators see exactly the calls AWS would.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

export interface Clients {
  s3: S3Client;
  sqs: SQSClient;
  ddb: DynamoDBDocumentClient;
}

export function createClients(region: string, env: NodeJS.ProcessEnv = process.env): Clients {
  // s3rver (and most S3 emulators) only understand path-style URLs; real S3 prefers virtual-hosted.
  const s3 = new S3Client({
    region,
    forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL),
  });
  const sqs = new SQSClient({ region });
  const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({ region }), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
  return { s3, sqs, ddb };
}

export function isConditionalCheckFailed(err: unknown): boolean {
  return err instanceof Error && err.name === 'ConditionalCheckFailedException';
}

export function isNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || status === 404;
}
