import { ChainableCommander, Redis } from 'ioredis';

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
}

/**
 * One job per attempt: `<deliveryId>-<attempt>`. Re-adding a job that still exists is a no-op,
 * so the sweeper and a crashed producer can both enqueue again safely. (BullMQ ids may not contain `:`.)
 */
export function deliveryJobId(deliveryId: string, attempt: number): string {
  return `${deliveryId}-${attempt}`;
}

/** Completed and failed jobs are removed: Postgres keeps the history, Redis only dispatches. */
export const DELIVERY_JOB_OPTIONS = {
  removeOnComplete: true,
  removeOnFail: true,
  attempts: 1,
} as const;

/** A Redis connection fit for BullMQ (blocking commands must not be retried per request). */
export function createRedis(redisUrl: string, name: string): Redis {
  return new Redis(redisUrl, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
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

export * from './redis.module';
