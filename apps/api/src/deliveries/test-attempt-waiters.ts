import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Gauge, type Registry } from 'prom-client';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { testAttemptsChannel } from '@bellhop/delivery';
import { APP_METRICS } from '@bellhop/observability';
import { REDIS } from '@bellhop/queue';

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
}

export const DEFAULT_TEST_ATTEMPT_WAIT_OPTIONS: Readonly<TestAttemptWaitOptions> = { boundMs: 35_000, recheckMs: 5_000, maxWaiters: 1_000 };

/** What the caller's look at the delivery found: whether the wait is over, and what to answer with. */
export interface Seen<T> {
  done: boolean;
  value: T;
}

export type WaitOutcome<T> =
  /** The look found it done. */
  | { kind: 'done'; value: T }
  /** Still not done at the bound: the last look's value. */
  | { kind: 'timed_out'; value: T }
  /** Too many requests are waiting in this process; nothing was read. */
  | { kind: 'busy' }
  /** The client went away; nothing more was read after it did. */
  | { kind: 'gone' };

interface Waiter {
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
 */
@Injectable()
export class TestAttemptWaiters implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(TestAttemptWaiters.name);
  /** Read on every wait, so that a test can shrink them on the running app. */
  readonly options: TestAttemptWaitOptions = { ...DEFAULT_TEST_ATTEMPT_WAIT_OPTIONS };
  private readonly channel: string;
  private readonly waiting = new Map<string, Set<Waiter>>();
  private count = 0;
  private subscriber: Redis | null = null;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
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
    // A connection in subscriber mode can run no other command: its own, beside the shared one.
    const subscriber = this.redis.duplicate({ connectionName: 'bellhop-test-attempts' });
    this.subscriber = subscriber;
    subscriber.on('message', (channel: string, deliveryId: string) => {
      if (channel === this.channel) this.wake(deliveryId);
    });
    subscriber.on('error', (err: Error) => this.logger.warn({ msg: 'test-attempt subscriber: Redis error; waiting requests read on their own meanwhile', error: err.message }));
    // ioredis subscribes again after a reconnection, but not to a channel whose first SUBSCRIBE
    // failed (Redis down at boot): subscribing on every ready covers both (a repeat is harmless).
    subscriber.on('ready', () => void this.subscribe());
    // Awaited, so that requests answered after boot are woken from the start.
    await this.subscribe();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }

  /**
   * Calls `look` until it says done: at once, then after each announcement for the delivery and
   * every `recheckMs` otherwise, until `boundMs` have passed. The waiter is registered before the
   * first look, so an attempt recorded in between is either seen by that look or announced to
   * it. When `signal` aborts (the client went away) the waiter is dropped at once and `look` is
   * not called again.
   */
  async wait<T>(deliveryId: string, look: () => Promise<Seen<T>>, signal: AbortSignal): Promise<WaitOutcome<T>> {
    if (signal.aborted) return { kind: 'gone' };
    if (this.count >= this.options.maxWaiters) return { kind: 'busy' };
    const waiter: Waiter = { woken: false, wake: null };
    this.add(deliveryId, waiter);
    const onAbort = () => {
      this.remove(deliveryId, waiter);
      waiter.wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const deadline = Date.now() + this.options.boundMs;
    try {
      for (;;) {
        waiter.woken = false;
        const seen = await look();
        if (signal.aborted) return { kind: 'gone' };
        if (seen.done) return { kind: 'done', value: seen.value };
        const left = deadline - Date.now();
        if (left <= 0) return { kind: 'timed_out', value: seen.value };
        // Announced while the look was reading: look again straight away.
        if (!waiter.woken) await this.sleep(waiter, Math.min(left, this.options.recheckMs));
        if (signal.aborted) return { kind: 'gone' };
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
  }

  /** Idempotent: the abort and the end of the wait both remove. */
  private remove(deliveryId: string, waiter: Waiter): void {
    const set = this.waiting.get(deliveryId);
    if (!set?.delete(waiter)) return;
    this.count--;
    if (set.size === 0) this.waiting.delete(deliveryId);
  }
}
