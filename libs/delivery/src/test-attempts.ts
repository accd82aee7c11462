import { Inject, Injectable, Logger } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { REDIS, type RedisClient } from '@bellhop/queue';

/**
 * The Redis channel on which workers say "an attempt of this test delivery is recorded" (the
 * message is the delivery id), for the API's `?wait=true`; the worker and the API also say so
 * when they cancel a test delivery (its webhook deleted), which ends the wait as well. Under QUEUE_PREFIX, so that
 * installations sharing one Redis never wake each other's requests.
 */
export function testAttemptsChannel(queuePrefix: string): string {
  return `${queuePrefix}:test-attempts`;
}

/**
 * The worker's half of `?wait=true`. Only test deliveries are announced, so ordinary traffic
 * pays nothing for it. A message carries no state: the API reads the delivery from Postgres when
 * woken, so a duplicate costs one read and a lost one only delays the answer until the API's
 * periodic look (Redis pub/sub keeps nothing for a subscriber that is reconnecting).
 */
@Injectable()
export class TestAttemptAnnouncer {
  private readonly logger = new Logger(TestAttemptAnnouncer.name);
  private readonly channel: string;

  constructor(
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(BELLHOP_CONFIG) config: BellhopConfig,
  ) {
    this.channel = testAttemptsChannel(config.queuePrefix);
  }

  /**
   * Call once the recording of an attempt, or the cancellation of the delivery, has committed,
   * never before: a woken request must find the change.
   */
  async recorded(deliveryId: string): Promise<void> {
    try {
      await this.redis.publish(this.channel, deliveryId);
    } catch (err) {
      this.logger.warn({ msg: 'could not announce a test attempt; a waiting request finds it at its next look', deliveryId, error: (err as Error).message });
    }
  }
}
