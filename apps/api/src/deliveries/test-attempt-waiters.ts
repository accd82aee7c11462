import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Gauge, type Registry } from 'prom-client';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { testAttemptsChannel } from '@bellhop/delivery';
import { APP_METRICS } from '@bellhop/observability';
import { REDIS, duplicateRedisClient, logRedisErrors, type RedisClient } from '@bellhop/queue';

export interface TestAttemptWaitOptions {
  /** How long a request waits for the first attempt before it is answered 202 (the contract's 35 s). */
  boundMs: number;
  /** How often a waiting request reads the delivery without being woken: the net under a lost announcement. */
  recheckMs: number;
  /**
   * Requests waiting at once in this process. Beyond it a request is answered at once, 202 with
   * the delivery as it is: its test event is already published and will be attempted, so a 429
   * would only invite the client to send a second one.
   */
  maxWaiters: number;
  /**
   * Requests of one organization waiting at once in this process, so that one tenant cannot take
   * every place under `maxWaiters`. Beyond it that organization's requests are answered at once,
   * as beyond `maxWaiters`.
   */
  maxWaitersPerOrganization: number;
}

export const DEFAULT_TEST_ATTEMPT_WAIT_OPTIONS: Readonly<TestAttemptWaitOptions> = { boundMs: 35_000, recheckMs: 5_000, maxWaiters: 1_000, maxWaitersPerOrganization: 20 };

/** What the caller's look at the delivery found: whether the wait is over, and what to answer with. */
export interface Seen<T> {
  done: boolean;
  value: T;
}

export type WaitOutcome<T> =
  /** The look found it done. */
  | { kind: 'done'; value: T }
  /** Still not done at the bound, or when the process began shutting down: the last look's value. */
  | { kind: 'timed_out'; value: T }
  /** Too many requests are waiting in this process (or of this organization), or it is shutting down; nothing was read. */
  | { kind: 'busy' }
  /** The client went away; nothing more was read after it did. */
  | { kind: 'gone' };

interface Waiter {
  /** Whose place under `maxWaitersPerOrganization` it takes. */
  organizationId: string;
  /** Set by an announcement, so that one arriving while the waiter reads is not lost. */
  woken: boolean;
  /** Ends the current sleep, if it is sleeping. */
  wake: (() => void) | null;
}

/**
 * The API's half of `?wait=true`: one Redis subscription per process to the workers'
 * announcements of recorded test attempts (see TestAttemptAnnouncer), and the requests waiting
 * for them, by delivery id. A waiting request costs no database work while nothing happens: it
 * reads once when it starts waiting, once per announcement for its delivery, and once every
 * `recheckMs` in case an announcement was lost (Redis restarting, the subscriber reconnecting).
 * A look that fails after the first is logged and the wait goes on: the test event is sent, and
 * the next announcement or recheck reads again (the bound still applies).
 */
@Injectable()
export class TestAttemptWaiters implements OnModuleInit, OnModuleDestroy, OnApplicationShutdown {
  private readonly logger = new Logger(TestAttemptWaiters.name);
  /** Read on every wait, so that a test can shrink them on the running app. */
  readonly options: TestAttemptWaitOptions = { ...DEFAULT_TEST_ATTEMPT_WAIT_OPTIONS };
  private readonly channel: string;
  private readonly waiting = new Map<string, Set<Waiter>>();
  private count = 0;
  private readonly countByOrganization = new Map<string, number>();
  /** Set when the application begins shutting down: nobody waits any longer, nor reads again. */
  private closing = false;
  private subscriber: RedisClient | null = null;

  constructor(
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(BELLHOP_CONFIG) config: BellhopConfig,
    @Inject(APP_METRICS) registry: Registry,
  ) {
    this.channel = testAttemptsChannel(config.queuePrefix);
    const waiters = () => this.count;
    new Gauge({
      name: 'bellhop_test_waiters',
      help: 'Requests of this API process waiting (?wait=true) for the first attempt of a test delivery',
      registers: [registry],
      collect() {
        this.set(waiters());
      },
    });
  }

  /** Requests waiting right now. */
  get size(): number {
    return this.count;
  }

  async onModuleInit(): Promise<void> {
    // A connection in subscriber mode can run no other command: its own, beside the shared one
    // (on Redis Cluster a cluster client too: PUBLISH reaches every node, so any node will do).
    const subscriber = duplicateRedisClient(this.redis, 'bellhop-test-attempts');
    this.subscriber = subscriber;
    subscriber.on('message', (channel: string, deliveryId: string) => {
      if (channel === this.channel) this.wake(deliveryId);
    });
    logRedisErrors(subscriber, this.logger, 'test-attempt subscriber: Redis error; waiting requests read on their own meanwhile');
    // ioredis subscribes again after a reconnection, but not to a channel whose first SUBSCRIBE
    // failed (Redis down at boot): subscribing on every ready covers both (a repeat is harmless).
    subscriber.on('ready', () => void this.subscribe());
    // Awaited, so that requests answered after boot are woken from the start.
    await this.subscribe();
  }

  /**
   * Nest closes the HTTP server after this hook (and after beforeApplicationShutdown), and that
   * waits for every open request: without this, for up to `boundMs` per waiting request, with
   * PrismaService already disconnected under them. Each waiting request is answered with what its
   * last look saw (202), without reading again; requests that start waiting from now on are
   * answered at once.
   */
  onModuleDestroy(): void {
    this.closing = true;
    for (const set of this.waiting.values()) {
      for (const waiter of set) {
        waiter.woken = true;
        waiter.wake?.();
      }
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }

  /**
   * Calls `look` until it says done: at once, then after each announcement for the delivery and
   * every `recheckMs` otherwise, until `boundMs` have passed. The waiter is registered before the
   * first look, so an attempt recorded in between is either seen by that look or announced to
   * it. When `signal` aborts (the client went away) the waiter is dropped at once and `look` is
   * not called again. The first look's failure is the caller's (such as a 404); a later one is
   * logged and the previous look's value stands.
   */
  async wait<T>(deliveryId: string, organizationId: string, look: () => Promise<Seen<T>>, signal: AbortSignal): Promise<WaitOutcome<T>> {
    if (signal.aborted) return { kind: 'gone' };
    if (this.closing || this.count >= this.options.maxWaiters) return { kind: 'busy' };
    if ((this.countByOrganization.get(organizationId) ?? 0) >= this.options.maxWaitersPerOrganization) return { kind: 'busy' };
    const waiter: Waiter = { organizationId, woken: false, wake: null };
    this.add(deliveryId, waiter);
    const onAbort = () => {
      this.remove(deliveryId, waiter);
      waiter.wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const deadline = Date.now() + this.options.boundMs;
    try {
      let seen = await look();
      for (;;) {
        if (signal.aborted) return { kind: 'gone' };
        if (seen.done) return { kind: 'done', value: seen.value };
        const left = deadline - Date.now();
        if (left <= 0 || this.closing) return { kind: 'timed_out', value: seen.value };
        // Announced while the look was reading: look again straight away.
        if (!waiter.woken) await this.sleep(waiter, Math.min(left, this.options.recheckMs));
        if (signal.aborted) return { kind: 'gone' };
        if (this.closing) return { kind: 'timed_out', value: seen.value };
        waiter.woken = false;
        try {
          seen = await look();
        } catch (err) {
          this.logger.warn({ msg: 'a waiting request could not read its test delivery; it keeps waiting', deliveryId, error: (err as Error).message });
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.remove(deliveryId, waiter);
    }
  }

  private async subscribe(): Promise<void> {
    try {
      await this.subscriber?.subscribe(this.channel);
    } catch (err) {
      this.logger.warn({ msg: 'could not subscribe to test-attempt announcements; waiting requests read on their own until it can', error: (err as Error).message });
    }
  }

  private wake(deliveryId: string): void {
    for (const waiter of this.waiting.get(deliveryId) ?? []) {
      waiter.woken = true;
      waiter.wake?.();
    }
  }

  private sleep(waiter: Waiter, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiter.wake = null;
        resolve();
      };
      // The request's socket keeps the process alive while it waits; the timer need not.
      const timer = setTimeout(done, ms).unref();
      waiter.wake = done;
    });
  }

  private add(deliveryId: string, waiter: Waiter): void {
    let set = this.waiting.get(deliveryId);
    if (!set) this.waiting.set(deliveryId, (set = new Set()));
    set.add(waiter);
    this.count++;
    this.countByOrganization.set(waiter.organizationId, (this.countByOrganization.get(waiter.organizationId) ?? 0) + 1);
  }

  /** Idempotent: the abort and the end of the wait both remove. */
  private remove(deliveryId: string, waiter: Waiter): void {
    const set = this.waiting.get(deliveryId);
    if (!set?.delete(waiter)) return;
    this.count--;
    if (set.size === 0) this.waiting.delete(deliveryId);
    const ofOrganization = (this.countByOrganization.get(waiter.organizationId) ?? 1) - 1;
    if (ofOrganization > 0) this.countByOrganization.set(waiter.organizationId, ofOrganization);
    else this.countByOrganization.delete(waiter.organizationId);
  }
}
