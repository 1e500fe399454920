/**
 * `npm run bench -- api [seconds] [connections]`: latency and throughput of POST /v1/jobs (one small inline
 * JPEG, multipart) and GET /v1/jobs/{id} on the embedded local stack (s3rver + local-aws-sqs + dynalite in this
 * process, so the figures include the emulators' cost). No worker runs: only the API is measured.
 */
import sharp from 'sharp';
import { readFileSync } from 'node:fs';
// autocannon ships no types; the subset used here is typed locally.
// @ts-expect-error no declaration file
import autocannon from 'autocannon';
import { startLocalStack } from '../../functions/local/stack.js';
import { report } from './report.js';

interface Result {
  latency: { p50: number; p99: number; average: number };
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
}

const run = (opts: Record<string, unknown>): Promise<Result> =>
  new Promise((resolve, reject) =>
    autocannon(opts, (err: Error | null, res: Result) => (err ? reject(err) : resolve(res))),
  );

export default async function api(args: string[]): Promise<void> {
  const duration = Number(args[0] ?? 10);
  const connections = Number(args[1] ?? 10);
  const stack = await startLocalStack({
    port: 0,
    webPage: false,
    // Admission limits lifted too: the bench measures the API's cost, not its brakes (with them, POSTs past
    // 120 jobs/min or 200 images in flight would be 429s). Their cost is in the figures: two conditional
    // DynamoDB updates per POST.
    env: {
      RATE_LIMIT_RPS: '1000000',
      RATE_LIMIT_BURST: '1000000',
      JOBS_PER_MINUTE: '1000000000',
      MAX_IN_FLIGHT_IMAGES: '1000000000',
      LOG_LEVEL: 'ERROR',
    },
  });
  try {
    const photo = readFileSync(
      new URL('../../node_modules/@vladmandic/face-api/demo/sample1.jpg', import.meta.url),
    );
    const small = await sharp(photo).resize(512).jpeg({ quality: 85 }).toBuffer();
    const form = new FormData();
    form.append('image', new Blob([small], { type: 'image/jpeg' }), 'bench.jpg');
    form.append('options', JSON.stringify({ steps: 10 }));
    const req = new Request('http://x/', { method: 'POST', body: form });
    const body = Buffer.from(await req.arrayBuffer());
    const auth = { authorization: `Bearer ${stack.apiKey}` };
    const extra = {
      duration_s: duration,
      connections,
      image_bytes: small.length,
      stack: 'local (emulators in-process)',
    };

    const post = await run({
      url: `${stack.url}/v1/jobs`,
      method: 'POST',
      headers: { ...auth, 'content-type': req.headers.get('content-type')! },
      body,
      connections,
      duration,
    });
    report('api', 'post_jobs_p50', post.latency.p50, 'ms', extra);
    report('api', 'post_jobs_p99', post.latency.p99, 'ms', extra);
    report('api', 'post_jobs_throughput', post.requests.average, 'req/s', {
      ...extra,
      non2xx: post.non2xx,
      errors: post.errors,
    });

    const created = (await (
      await fetch(`${stack.url}/v1/jobs`, {
        method: 'POST',
        headers: { ...auth, 'content-type': req.headers.get('content-type')! },
        body,
      })
    ).json()) as { id: string };
    const get = await run({
      url: `${stack.url}/v1/jobs/${created.id}`,
      headers: auth,
      connections,
      duration,
    });
    report('api', 'get_job_p50', get.latency.p50, 'ms', extra);
    report('api', 'get_job_p99', get.latency.p99, 'ms', extra);
    report('api', 'get_job_throughput', get.requests.average, 'req/s', {
      ...extra,
      non2xx: get.non2xx,
      errors: get.errors,
    });
  } finally {
    await stack.stop();
  }
}
