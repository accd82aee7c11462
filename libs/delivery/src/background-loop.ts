import type { Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';

/**
 * Work a worker does again and again in the background (the sweeper, the replay driver, the
 * retention purge, the relay of operational events, the stats compactor): a pass when the app
 * boots, then the next one after the delay the pass asks for, until the app closes. One pass at a
 * time per process; a nudge runs the next pass as soon as the one in progress ends. The timers
 * never keep a process alive, and closing waits for the pass in progress.
 */
export abstract class BackgroundLoop<T> implements OnApplicationBootstrap, OnModuleDestroy {
  protected abstract readonly logger: Logger;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private again = false;
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

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
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
        this.again = false;
        this.schedule(again ? 0 : delayMs);
      });
  }
}
