/**
 * The one declaration of the job, image and webhook state machines. Every status change in the service goes
 * through `transition()` in jobs-repo.ts, which turns these tables into the DynamoDB condition of its write: a
 * writer can only move a record along a declared edge, so a retry, a duplicate event or a late worker that
 * would take an illegal edge is refused by the database, not by a scattered condition string.
 */
import type { ImageStatus, JobStatus, WebhookStatus } from './records.js';

export interface Edge<S extends string> {
  from: S;
  to: S;
  /** When the edge is taken (documentation, and the test's message when an edge goes missing). */
  when: string;
}

export interface Machine<S extends string> {
  name: 'job' | 'image' | 'webhook';
  /** The attribute of the item that holds the state. */
  attribute: string;
  states: readonly S[];
  terminal: readonly S[];
  edges: readonly Edge<S>[];
}

export const JOB: Machine<JobStatus> = {
  name: 'job',
  attribute: 'status',
  states: ['queued', 'running', 'completed', 'failed', 'deleted'],
  terminal: ['completed', 'failed', 'deleted'],
  edges: [
    { from: 'queued', to: 'running', when: 'a worker picks up the first image' },
    {
      from: 'queued',
      to: 'completed',
      when: 'every image terminal before any worker ran, at least one done',
    },
    { from: 'queued', to: 'failed', when: 'every image failed before any worker ran (e.g. enqueue failed)' },
    { from: 'running', to: 'completed', when: 'every image terminal, at least one done' },
    { from: 'running', to: 'failed', when: 'every image terminal, none done' },
    { from: 'queued', to: 'deleted', when: 'DELETE /v1/jobs/{id}' },
    { from: 'running', to: 'deleted', when: 'DELETE /v1/jobs/{id} (in-flight work is aborted)' },
    { from: 'completed', to: 'deleted', when: 'DELETE /v1/jobs/{id}' },
    { from: 'failed', to: 'deleted', when: 'DELETE /v1/jobs/{id}' },
  ],
};

export const IMAGE: Machine<ImageStatus> = {
  name: 'image',
  attribute: 'status',
  states: ['queued', 'processing', 'done', 'failed'],
  terminal: ['done', 'failed'],
  edges: [
    { from: 'queued', to: 'processing', when: 'a worker starts the image' },
    { from: 'processing', to: 'processing', when: 'a redelivered message restarts a crashed attempt' },
    {
      from: 'processing',
      to: 'queued',
      when: 'the reconciler re-queues a stalled image that left no result',
    },
    { from: 'processing', to: 'done', when: 'its result is in S3 (completion event or reconciler)' },
    { from: 'queued', to: 'done', when: 'a late result of an attempt the reconciler had re-queued' },
    {
      from: 'processing',
      to: 'failed',
      when: 'bad input, privacy check, retries exhausted or stalled twice',
    },
    { from: 'queued', to: 'failed', when: 'enqueue failed, input gone, or the DLQ gave up' },
  ],
};

/**
 * The webhook of a job. `pending` is the outbox: it is set in the same conditional write that finishes the job
 * (with the outbox index key), so a crash after that write cannot lose the delivery — the dispatcher sweep
 * finds it. `enqueued` means a delivery attempt is on the webhooks queue.
 */
export const WEBHOOK: Machine<WebhookStatus> = {
  name: 'webhook',
  attribute: 'webhookStatus',
  states: ['none', 'pending', 'enqueued', 'delivered', 'failed'],
  terminal: ['none', 'delivered', 'failed'],
  edges: [
    {
      from: 'pending',
      to: 'enqueued',
      when: 'the finisher or the outbox sweep put the first attempt on the queue',
    },
    { from: 'pending', to: 'delivered', when: 'attempt 1 was delivered before its enqueue was recorded' },
    { from: 'pending', to: 'failed', when: 'attempt 1 failed for good before its enqueue was recorded' },
    { from: 'enqueued', to: 'enqueued', when: 'a failed attempt scheduled the next one' },
    { from: 'enqueued', to: 'delivered', when: 'the endpoint answered 2xx' },
    { from: 'enqueued', to: 'failed', when: 'attempts exhausted, refused by policy, or tenant gone' },
  ],
};

export const MACHINES = { job: JOB, image: IMAGE, webhook: WEBHOOK } as const;

/** The states from which `to` may be entered. Empty: no edge leads there (the caller has a bug). */
export function sourcesOf<S extends string>(m: Machine<S>, to: S): S[] {
  return m.edges.filter((e) => e.to === to).map((e) => e.from);
}

export function isLegal<S extends string>(m: Machine<S>, from: S, to: S): boolean {
  return m.edges.some((e) => e.from === from && e.to === to);
}

export class IllegalTransition extends Error {
  constructor(machine: string, from: readonly string[], to: string) {
    super(`${machine}: no declared edge ${from.length ? `from ${from.join('|')} ` : ''}to ${to}`);
    this.name = 'IllegalTransition';
  }
}

/**
 * The states a transition to `to` may leave: all declared sources, or the subset `only` when the caller narrows
 * it (e.g. the reconciler only moves `processing` images). Narrowing to an undeclared edge throws: it is a bug.
 */
export function legalSources<S extends string>(m: Machine<S>, to: S, only?: readonly S[]): S[] {
  const all = sourcesOf(m, to);
  if (!only) {
    if (!all.length) throw new IllegalTransition(m.name, [], to);
    return all;
  }
  const bad = only.filter((s) => !all.includes(s));
  if (bad.length || !only.length) throw new IllegalTransition(m.name, bad.length ? bad : only, to);
  return [...only];
}
