export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Draw a bar redrawn in place; default: whether the stream is a terminal. */
  tty?: boolean;
  /** Without a terminal, at most one line per this many ms (default 1000), besides the first and the last. */
  lineIntervalMs?: number;
  now?: () => number;
}

const WIDTH = 24;
/** A terminal redraw at most every 80 ms: smooth enough, and a fast loop does not flood the terminal. */
const TTY_INTERVAL_MS = 80;

/**
 * A progress bar on a terminal; elsewhere (a pipe, a CI log, a file) plain lines at a bounded rate,
 * with no carriage return or escape code, so that a log shows a readable history instead of one
 * line redrawn a thousand times.
 */
export class Progress {
  private readonly tty: boolean;
  private readonly lineIntervalMs: number;
  private readonly now: () => number;
  private lastWriteAt = -Infinity;
  private lastText = '';
  private finished = false;
  private done = 0;
  private total = 0;
  private note = '';

  constructor(
    private readonly stream: ProgressStream,
    private readonly label: string,
    options: ProgressOptions = {},
  ) {
    this.tty = options.tty ?? stream.isTTY === true;
    this.lineIntervalMs = options.lineIntervalMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  update(done: number, total: number, note = ''): void {
    if (this.finished) return;
    this.done = done;
    this.total = total;
    this.note = note;
    const now = this.now();
    if (now - this.lastWriteAt < (this.tty ? TTY_INTERVAL_MS : this.lineIntervalMs)) return;
    this.write(now);
  }

  /** Writes the last state (always, so the log ends with the outcome) and ends the line. */
  finish(note?: string): void {
    if (this.finished) return;
    if (note !== undefined) this.note = note;
    this.write(this.now());
    if (this.tty) this.stream.write('\n');
    this.finished = true;
  }

  private write(now: number): void {
    const text = this.tty ? this.bar() : this.line();
    if (text === this.lastText) return;
    this.lastWriteAt = now;
    this.lastText = text;
    // \r back to the start of the line, ESC [K clears what a longer previous text left behind.
    this.stream.write(this.tty ? `\r${text}\x1b[K` : `${text}\n`);
  }

  private fraction(): number {
    return this.total > 0 ? Math.min(1, this.done / this.total) : 1;
  }

  private counts(): string {
    return `${this.done}/${this.total} (${Math.floor(this.fraction() * 100)}%)`;
  }

  private line(): string {
    return `${this.label}: ${this.counts()}${this.note ? ` ${this.note}` : ''}`;
  }

  private bar(): string {
    const filled = Math.round(this.fraction() * WIDTH);
    const text = `${this.label} [${'█'.repeat(filled)}${'░'.repeat(WIDTH - filled)}] ${this.counts()}${this.note ? ` ${this.note}` : ''}`;
    const columns = this.stream.columns;
    return columns && text.length >= columns ? text.slice(0, columns - 1) : text;
  }
}
