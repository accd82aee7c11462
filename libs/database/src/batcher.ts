export interface BatcherOptions {
  /** Most items in one flush. */
  maxBatch?: number;
  /** Flushes allowed to run at once; more callers wait and join the next batch. */
  maxConcurrent?: number;
  /**
   * When a flush of several items fails, flush each of them alone, one after another, so that one
   * bad item (or a row that changed meanwhile) fails only its own caller. For flushes that are
   * all-or-nothing (one statement) and can tell their own committed work on a second try.
   */
  isolateFailures?: boolean;
}

/**
 * Groups calls that arrive close together into one call of `flush`, so that many concurrent
 * callers share one round trip to Postgres or Redis. Every caller gets its own result, or the
 * error of the flush it was in; nothing is acknowledged before `flush` has finished for it.
 */
export class Batcher<I, O> {
  private queue: Array<{ item: I; resolve: (value: O) => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  private running = 0;
  private readonly maxBatch: number;
  private readonly maxConcurrent: number;
  private readonly isolateFailures: boolean;

  constructor(
    private readonly flush: (items: I[]) => Promise<O[]>,
    options: BatcherOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 200;
    this.maxConcurrent = options.maxConcurrent ?? 2;
    this.isolateFailures = options.isolateFailures ?? false;
  }

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.running >= this.maxConcurrent || this.queue.length === 0) return;
    this.scheduled = true;
    // After the current I/O callbacks, so that everything that became ready together goes in one batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.running >= this.maxConcurrent || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.running += 1;
    try {
      const results = await this.flush(batch.map((entry) => entry.item));
      batch.forEach((entry, i) => entry.resolve(results[i]));
    } catch (err) {
      if (this.isolateFailures && batch.length > 1) {
        // One after another, so that a struggling database is not handed a burst of retries.
        for (const entry of batch) {
          await this.flush([entry.item]).then(
            ([result]) => entry.resolve(result),
            (alone: unknown) => entry.reject(alone),
          );
        }
      } else {
        batch.forEach((entry) => entry.reject(err));
      }
    } finally {
      this.running -= 1;
      this.schedule();
    }
  }
}
