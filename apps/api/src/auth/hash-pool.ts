import { AppError } from '@bellhop/domain';

export interface HashPoolOptions {
  /** Hash jobs running at once. */
  concurrency?: number;
  /** Jobs waiting for a free slot; one more is refused at once. */
  maxWaiting?: number;
}

/** The answer when the waiting line is full: 429, try again in a second. */
export class HashPoolFull extends AppError {
  constructor() {
    super('rate_limited', 'Too many password checks at once, try again shortly');
    this.retryAfterSeconds = 1;
  }
}

/**
 * Every password hash and verification of this process goes through one pool. A memory-hard hash
 * holds a thread of libuv's pool (4 threads, shared with file, DNS and zlib work) for ~100 ms:
 * unbounded, a burst of logins would take every thread and queue without end. Two at a time leaves
 * the other threads to the rest of the API; past the waiting line, a request is refused at once
 * with 429 instead of waiting behind hundreds of others.
 */
export class HashPool {
  private readonly concurrency: number;
  private readonly maxWaiting: number;
  private running = 0;
  private readonly line: Array<() => void> = [];

  constructor(options: HashPoolOptions = {}) {
    this.concurrency = options.concurrency ?? 2;
    this.maxWaiting = options.maxWaiting ?? 32;
  }

  /** Jobs waiting for a slot now. */
  get waiting(): number {
    return this.line.length;
  }

  /** Runs `job` in a slot once one is free; throws HashPoolFull without running it if the line is full. */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running < this.concurrency) {
      this.running++;
    } else {
      if (this.line.length >= this.maxWaiting) throw new HashPoolFull();
      // The finishing job hands its slot over directly, so `running` stays counted.
      await new Promise<void>((resolve) => this.line.push(resolve));
    }
    try {
      return await job();
    } finally {
      const next = this.line.shift();
      if (next) next();
      else this.running--;
    }
  }
}
