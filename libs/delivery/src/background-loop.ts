import type { Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';

/**
 * The wait of a loop between passes that find nothing: `minMs` after the first, twice as long
 * after each next one, up to `maxMs`, and `minMs` again once a pass finds work (reset()). An idle
 * worker then looks rarely, while one that has work keeps its pace.
 */
export class IdleBackoff {
  private nextMs: number;

  constructor(
    readonly minMs: number,
    readonly maxMs: number,
  ) {
    this.nextMs = minMs;
  }

  /** The wait after a pass that found nothing. */
  idle(): number {
    const delayMs = this.nextMs;
    this.nextMs = Math.min(this.maxMs, 2 * this.nextMs);
    return delayMs;
  }

  /** A pass found work: the next wait after an empty pass is the shortest again. */
  reset(): void {
    this.nextMs = this.minMs;
  }
}

/**
 * Work a worker does again and again in the background (the sweeper, the replay driver, the
 * retention purge, the relay of operational events, the stats compactor): a pass when the app
 * boots, then the next one after the delay the pass asks for, until the app closes. One pass at a
 * time per process; a nudge runs the next pass as soon as the one in progress ends, a wake cuts a
 * longer wait short. The timers never keep a process alive, and closing waits for the pass in
 * progress.
 */
export abstract class BackgroundLoop<T> implements OnApplicationBootstrap, OnModuleDestroy {
  protected abstract readonly logger: Logger;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private again = false;
  /** When the timer fires (ms since the epoch). */
  private dueAt = 0;
  /** Set by wake() during a pass: the next pass comes within this long at the latest. */
  private wakeWithinMs: number | null = null;
  protected stopped = true;

  protected constructor(
    /** What a failed pass is logged as ("sweep", "replay pass", ...). */
    private readonly passName: string,
    private readonly autoStart: boolean,
  ) {}

  /** One pass of the work. */
  protected abstract pass(): Promise<T>;

  /** How long to wait before the next pass, given what this one did (null: it failed). */
  protected abstract delayAfter(result: T | null): number;

  onApplicationBootstrap(): void {
    if (this.autoStart) this.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.stop();
  }

  /** A pass now, then one after each delay, until stop(). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops the timer and waits for the pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** There is work: the next pass now, or as soon as the one in progress ends. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  /**
   * There may be work soon (this process wrote some): the next pass within `withinMs` at the
   * latest. Cheap enough to call for every piece of work: it only moves a timer that would fire
   * later, so a loop already at its working pace is left alone, unlike nudge().
   */
  wake(withinMs: number): void {
    if (this.stopped) return;
    if (this.running) this.wakeWithinMs = Math.min(this.wakeWithinMs ?? withinMs, withinMs);
    else if (this.timer && this.dueAt > Date.now() + withinMs) this.schedule(withinMs);
  }

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.dueAt = Date.now() + delayMs;
    this.timer = setTimeout(() => this.tick(), delayMs);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = null;
    if (this.stopped || this.running) return;
    this.running = this.pass()
      .then(
        (result) => this.delayAfter(result),
        (err: Error) => {
          this.logger.error({ msg: `${this.passName} failed; retrying later`, error: err.message });
          return this.delayAfter(null);
        },
      )
      .then((delayMs) => {
        this.running = null;
        if (this.stopped) return;
        const again = this.again;
        const wakeWithinMs = this.wakeWithinMs;
        this.again = false;
        this.wakeWithinMs = null;
        this.schedule(again ? 0 : Math.min(delayMs, wakeWithinMs ?? delayMs));
      });
  }
}
