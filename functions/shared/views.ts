/** Public JSON views of stored items (shared by the API and the webhook payload). */
import type { ImageItem, JobItem } from './records.js';

export function publicJobStatus(job: JobItem): 'queued' | 'running' | 'completed' | 'failed' {
  return job.status === 'deleted' ? 'failed' : job.status;
}

export function imageCounts(images: ImageItem[]) {
  return {
    total: images.length,
    queued: images.filter((i) => i.status === 'queued').length,
    processing: images.filter((i) => i.status === 'processing').length,
    done: images.filter((i) => i.status === 'done').length,
    failed: images.filter((i) => i.status === 'failed').length,
  };
}

export interface WebhookEvent {
  type: 'job.completed' | 'job.failed';
  timestamp: string;
  data: {
    id: string;
    status: 'completed' | 'failed';
    createdAt: string;
    completedAt?: string;
    counts: ReturnType<typeof imageCounts>;
    images: Array<{ id: string; status: string; error?: { code: string; detail: string } }>;
  };
}

export function webhookEvent(job: JobItem, images: ImageItem[], now: number): WebhookEvent {
  const status = job.status === 'completed' ? 'completed' : 'failed';
  return {
    type: status === 'completed' ? 'job.completed' : 'job.failed',
    timestamp: new Date(now).toISOString(),
    data: {
      id: job.jobId,
      status,
      createdAt: job.createdAt,
      completedAt: job.completedAt,
      counts: imageCounts(images),
      images: images.map((i) => ({
        id: i.imageId,
        status: i.status,
        ...(i.error ? { error: i.error } : {}),
      })),
    },
  };
}
