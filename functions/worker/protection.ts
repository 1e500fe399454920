/**
 * ECS task scale-in protection while an image is processed: the service scales on queue backlog, and without
 * protection a scale-in may stop the very task that is halfway through an image (its work is then done twice).
 * The task finds its own cluster and ARN through the ECS task metadata endpoint; where there is none (the local
 * stack, tests) protection is skipped. Failures are logged and never fail the image.
 */
import { ECSClient, UpdateTaskProtectionCommand } from '@aws-sdk/client-ecs';
import type { Log } from '../shared/logger.js';
import { errFields } from '../shared/logger.js';

/** Protection expires by itself: a task that dies while protected does not block scale-in forever. */
const EXPIRES_MINUTES = 180;

export interface TaskProtection {
  set(on: boolean): Promise<void>;
}

export function taskProtection(log: Log, env: NodeJS.ProcessEnv = process.env): TaskProtection {
  const meta = env.ECS_CONTAINER_METADATA_URI_V4;
  if (!meta) return { set: async () => undefined };
  const ecs = new ECSClient({});
  let task: Promise<{ cluster: string; arn: string } | null> | null = null;
  const whoAmI = () =>
    (task ??= fetch(`${meta}/task`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.json() as Promise<{ Cluster: string; TaskARN: string }>)
      .then((t) => ({ cluster: t.Cluster, arn: t.TaskARN }))
      .catch((err) => {
        log.warn('task metadata unavailable; no scale-in protection', errFields(err));
        return null;
      }));
  return {
    set: async (on) => {
      const t = await whoAmI();
      if (!t) return;
      try {
        await ecs.send(
          new UpdateTaskProtectionCommand({
            cluster: t.cluster,
            tasks: [t.arn],
            protectionEnabled: on,
            ...(on ? { expiresInMinutes: EXPIRES_MINUTES } : {}),
          }),
        );
      } catch (err) {
        log.warn('could not update task scale-in protection', { on, ...errFields(err) });
      }
    },
  };
}
