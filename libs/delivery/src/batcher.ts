/**
 * Groups calls that arrive close together into one call of `flush`, so that many concurrent
 * attempts share one round trip to Postgres. Every caller gets its own result, or the batch's
 * error; nothing is acknowledged before `flush` has finished (committed) for it.
 */
export class Batcher<I, O> {
  private queue: Array<{ item: I; resolve: (value: O) => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  private running = 0;

  constructor(
    private readonly flush: (items: I[]) => Promise<O[]>,
    private readonly maxBatch = 200,
    /** Batches allowed to run at once; more callers wait and join the next batch. */
    private readonly maxConcurrent = 2,
  ) {}

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
      batch.forEach((entry) => entry.reject(err));
    } finally {
      this.running -= 1;
      this.schedule();
    }
  }
}
