import { ChainableCommander } from 'ioredis';
import { createRedisClient, type RedisClient, type RedisTarget } from './redis-client';

/**
 * The queue contract shared by the API (producer) and the worker (consumer).
 * Job data carries ids only: never payloads or secrets (Redis keeps job data in clear text).
 */
export const Queues = { delivery: 'delivery' } as const;

export interface DeliveryJob {
  deliveryId: string;
  /** Lets the worker check the webhook's in-flight cap before touching Postgres. */
  webhookId?: string;
  /** For the per-organization cap. */
  organizationId?: string;
  /** The next step of the schedule (the default), or a manual or replay attempt outside it. */
  kind?: 'scheduled' | 'manual';
  /**
   * For a scheduled job: the step it was made for (1 = the first attempt). A job for a step that
   * Postgres has already recorded is dropped. Absent in jobs of earlier versions.
   */
  attempt?: number;
}

/**
 * One job per scheduled step: `<deliveryId>-<step>`. Re-adding a job that still exists is a no-op,
 * so the sweeper and a crashed producer can both enqueue again safely. (BullMQ ids may not contain `:`.)
 */
export function deliveryJobId(deliveryId: string, attempt: number): string {
  return `${deliveryId}-${attempt}`;
}

/** One job per manual request: `<deliveryId>-m<requested at, ms>`. */
export function manualJobId(deliveryId: string, requestedAt: Date): string {
  return `${deliveryId}-m${requestedAt.getTime()}`;
}

/** Completed and failed jobs are removed: Postgres keeps the history, Redis only dispatches. */
export const DELIVERY_JOB_OPTIONS = {
  removeOnComplete: true,
  removeOnFail: true,
  attempts: 1,
} as const;

/** A Redis connection fit for BullMQ (blocking commands must not be retried per request), to one Redis or a cluster. */
export function createRedis(target: RedisTarget, name: string): RedisClient {
  return createRedisClient(target, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
}

/** The replies of a pipeline in order, or the first error among them. */
export async function execPipeline(pipeline: ChainableCommander): Promise<unknown[]> {
  const results = await pipeline.exec();
  if (!results) throw new Error('Redis pipeline was discarded');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

export * from './connection';
export * from './redis-client';
export * from './redis.module';
